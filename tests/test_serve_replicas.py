"""Two real ``delaykit serve`` replicas of the shipped ASR model behind nginx on loopback
(:mod:`delaykit.serve.replicas`): sessions through the proxy get the words of a direct connection and spread
over both replicas, a ``?session=`` key pins reconnects to one replica, and when a replica dies its client's
connection closes while new sessions go to the other."""

from __future__ import annotations

import re
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("websockets", reason="the server is an optional extra: delaykit[serve]")
from test_serve import RATE, pcm16, recognise
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from delaykit.audio import load_audio
from delaykit.serve import protocol
from delaykit.serve.protocol import Kind
from delaykit.serve.replicas import ReplicaSet, find_nginx, free_ports

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(find_nginx() is None,
                       reason="nginx is not installed (apt-get install nginx): this test runs it in front of "
                              "two delaykit serve replicas"),
]

SPEECH = Path(__file__).parents[1] / "examples" / "speech.wav"
ENDPOINT = "/api/asr"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Two replicas (4 sessions, 1 torch thread each) and nginx, on free loopback ports."""
    *ports, proxy_port = free_ports(3)
    with ReplicaSet(ports, proxy_port, tmp_path_factory.mktemp("replicas"),
                    ["--max-sessions", "4", "--threads", "1"]) as replicas:
        yield replicas


@pytest.fixture(scope="module")
def speech():
    return load_audio(SPEECH, RATE)


@pytest.fixture(scope="module")
def direct_words(cluster, speech):
    """The words a direct connection to a replica gets (not through nginx)."""
    words, errors = recognise(ws_url(cluster.replica_url(0)), speech)
    assert words and not errors, errors
    return words


def ws_url(base: str) -> str:
    return base.replace("http://", "ws://") + ENDPOINT


def metric(base: str, name: str) -> int:
    """A counter or gauge of one replica's /metrics."""
    text = urllib.request.urlopen(base + "/metrics", timeout=10).read().decode()
    return int(re.search(rf"^{name} (\d+)$", text, re.MULTILINE).group(1))


def sessions_total(cluster: ReplicaSet) -> list[int]:
    return [metric(cluster.replica_url(i), "delaykit_sessions_total") for i in range(len(cluster.ports))]


def test_proxied_sessions_get_the_direct_words_and_spread_over_both_replicas(cluster, speech, direct_words):
    before = sessions_total(cluster)
    url = ws_url(cluster.url)
    with ThreadPoolExecutor(4) as pool:  # concurrent clients, each cutting the audio its own way
        results = list(pool.map(lambda i: recognise(url, speech, chunk=0.1 + 0.05 * i), range(4)))
    for words, errors in results:
        assert not errors and words == direct_words
    spread = [after - start for after, start in zip(sessions_total(cluster), before)]
    assert sum(spread) == 4 and min(spread) >= 1, spread  # least_conn: each replica took some
    with urllib.request.urlopen(cluster.url + "/health", timeout=10) as health:
        assert health.status == 200


def test_a_session_key_brings_reconnects_back_to_one_replica(cluster):
    for key in ("alpha", "beta"):
        before = sessions_total(cluster)
        for _ in range(3):
            with connect(ws_url(cluster.url) + f"?session={key}") as ws:
                ws.recv(timeout=10)  # handshake: the session was admitted
        spread = [after - start for after, start in zip(sessions_total(cluster), before)]
        assert sorted(spread) == [0, 3], (key, spread)


def test_a_dead_replicas_client_is_closed_and_the_other_replica_takes_new_sessions(cluster, speech,
                                                                                 direct_words):
    with connect(ws_url(cluster.url), max_size=None) as doomed:
        doomed.recv(timeout=10)  # handshake
        doomed.send(protocol.encode(Kind.AUDIO, pcm16(speech[:RATE])))  # 1 s of audio, then the session stays open
        victim = holder_of_the_only_session(cluster)
        survivor = 1 - victim
        before = metric(cluster.replica_url(survivor), "delaykit_sessions_total")
        cluster.kill(victim)
        killed = time.monotonic()
        with pytest.raises(ConnectionClosed) as closed:
            while True:  # words of the audio already sent may come first; then the close, not a hang
                doomed.recv(timeout=10)
        assert time.monotonic() - killed < 5
        assert closed.value.rcvd is None  # closed by nginx under it (1006): no replica left to say goodbye
    for _ in range(2):  # nginx finds the dead replica refusing and sends new sessions to the survivor
        words, errors = recognise(ws_url(cluster.url), speech)
        assert not errors and words == direct_words
    assert metric(cluster.replica_url(survivor), "delaykit_sessions_total") == before + 2


def holder_of_the_only_session(cluster: ReplicaSet, timeout: float = 10.0) -> int:
    """The index of the replica holding the one open session, once the others hold none."""
    deadline = time.monotonic() + timeout
    while True:
        open_sessions = [metric(cluster.replica_url(i), "delaykit_sessions") for i in range(len(cluster.ports))]
        if sorted(open_sessions) == [0] * (len(open_sessions) - 1) + [1]:
            return open_sessions.index(1)
        assert time.monotonic() < deadline, open_sessions
        time.sleep(0.05)
