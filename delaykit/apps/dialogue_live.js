// The dialogue app's live tab (delaykit/apps/dialogue.py): run by gr.HTML's js_on_load, with `element` the
// component's root. A WebSocket to the app's own /api/chat (the framing of delaykit/serve/protocol.py) carries
// the microphone up and the agent down at once, both in 80 ms frames of 16-bit PCM at the model's rate:
//
// - an AudioContext at the model's rate (the browser resamples the microphone into it);
// - a capture AudioWorklet cuts the microphone into frames of `frame_size` samples, each sent as it fills;
// - a player AudioWorklet plays the agent's frames from a ring buffer, continuously (it waits for two frames
//   before it starts, and again after running dry);
// - 0x02 text pieces are shown as they come; a canvas draws both channels' levels (dB per frame) over time.
//
// Stop, a fatal error (e.g. every slot taken) or leaving the page closes the socket, which frees the slot.
// window.__delaykitChat holds counters (frames sent and received, with times) for tests and curious users.

const WORKLET = `
class DelaykitCapture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.size = options.processorOptions.frameSize;
    this.frame = new Float32Array(this.size);
    this.filled = 0;
  }
  process(inputs) {
    const input = inputs[0] && inputs[0][0];
    if (input) {
      for (let i = 0; i < input.length; i++) {
        this.frame[this.filled++] = input[i];
        if (this.filled === this.size) {
          this.port.postMessage(this.frame, [this.frame.buffer]);
          this.frame = new Float32Array(this.size);
          this.filled = 0;
        }
      }
    }
    return true;
  }
}
class DelaykitPlayer extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.ring = new Float32Array(options.processorOptions.capacity);
    this.prebuffer = options.processorOptions.prebuffer;
    this.read = 0;
    this.count = 0;
    this.playing = false;
    this.port.onmessage = (event) => {
      const frame = event.data;
      const size = this.ring.length;
      for (let i = 0; i < frame.length; i++) {
        if (this.count === size) {  // full: drop the oldest sample
          this.read = (this.read + 1) % size;
          this.count -= 1;
        }
        this.ring[(this.read + this.count) % size] = frame[i];
        this.count += 1;
      }
    };
  }
  process(inputs, outputs) {
    const out = outputs[0][0];
    if (!this.playing && this.count >= this.prebuffer) this.playing = true;
    for (let i = 0; i < out.length; i++) {
      if (this.playing && this.count > 0) {
        out[i] = this.ring[this.read];
        this.read = (this.read + 1) % this.ring.length;
        this.count -= 1;
      } else {
        out[i] = 0;
      }
    }
    if (this.playing && this.count === 0) {
      this.playing = false;
      this.port.postMessage('underrun');
    }
    return true;
  }
}
registerProcessor('delaykit-capture', DelaykitCapture);
registerProcessor('delaykit-player', DelaykitPlayer);
`;

const AUDIO = 1, TEXT = 2, ERROR = 5, HANDSHAKE = 0;
const WORD_START = '\u2581';
const HISTORY_FRAMES = 125;  // the plot's width: 10 s of 80 ms frames

const startButton = element.querySelector('.dk-start');
const stopButton = element.querySelector('.dk-stop');
const statusLine = element.querySelector('.dk-status');
const transcript = element.querySelector('.dk-text');
const canvas = element.querySelector('.dk-levels');
const stats = window.__delaykitChat = {
  state: 'idle', sent: 0, received: 0, pieces: 0, underruns: 0, sentTimes: [], receivedTimes: [], error: null,
};
let call = null;  // {socket, context, stream, nodes}
const levels = {you: [], agent: []};  // dB per frame, newest last

function say(text) { statusLine.textContent = text; }

function decibels(samples) {
  let sum = 0;
  for (let i = 0; i < samples.length; i++) sum += samples[i] * samples[i];
  return Math.max(-80, 10 * Math.log10(sum / samples.length + 1e-12));
}

function remember(channel, samples) {
  const history = levels[channel];
  history.push(decibels(samples));
  if (history.length > HISTORY_FRAMES) history.shift();
}

function draw() {
  const context = canvas.getContext('2d');
  const width = canvas.width, height = canvas.height;
  context.fillStyle = '#fff';
  context.fillRect(0, 0, width, height);
  context.strokeStyle = '#ddd';
  context.fillStyle = '#888';
  context.font = '11px sans-serif';
  for (const db of [0, -20, -40, -60]) {  // grid: dB full scale
    const y = height * (-db / 80);
    context.beginPath(); context.moveTo(0, y); context.lineTo(width, y); context.stroke();
    context.fillText(`${db} dB`, 4, Math.min(height - 2, y + 12));
  }
  const series = [['you', '#1f77b4'], ['agent', '#d62728']];
  series.forEach(([name, color], index) => {
    const history = levels[name];
    context.strokeStyle = color;
    context.lineWidth = 2;
    context.beginPath();
    history.forEach((db, i) => {
      const x = width * (HISTORY_FRAMES - history.length + i) / (HISTORY_FRAMES - 1);
      const y = height * (-db / 80);
      if (i === 0) context.moveTo(x, y); else context.lineTo(x, y);
    });
    context.stroke();
    context.fillStyle = color;
    context.fillText(name, width - 60, 14 + 14 * index);
  });
  if (call) requestAnimationFrame(draw);
}

function chatUrl() {
  const url = new URL('api/chat', window.location.href);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  url.search = '';
  return url.toString();
}

function send(socket, samples) {  // 0x01 + little-endian 16-bit PCM
  const bytes = new Uint8Array(1 + 2 * samples.length);
  const view = new DataView(bytes.buffer);
  bytes[0] = AUDIO;
  for (let i = 0; i < samples.length; i++) {
    const s = Math.max(-1, Math.min(1, samples[i]));
    view.setInt16(1 + 2 * i, Math.round(s < 0 ? s * 32768 : s * 32767), true);
  }
  socket.send(bytes);
}

function receive(event) {
  const data = new Uint8Array(event.data);
  const kind = data[0];
  if (kind === HANDSHAKE) {
    const handshake = JSON.parse(new TextDecoder().decode(data.subarray(1)));
    const current = call;
    openAudio(current, handshake).catch((error) => {
      if (call === current) stop(`microphone or audio failed: ${error}`);
    });
  } else if (kind === AUDIO && call && call.player) {
    const pcm = new DataView(data.buffer, 1);
    const frame = new Float32Array((data.length - 1) >> 1);
    for (let i = 0; i < frame.length; i++) frame[i] = pcm.getInt16(2 * i, true) / 32768;
    remember('agent', frame);
    call.player.port.postMessage(frame, [frame.buffer]);
    stats.received += 1;
    stats.receivedTimes.push(performance.now());
  } else if (kind === TEXT) {
    const piece = new TextDecoder().decode(data.subarray(1));
    transcript.textContent += piece.split(WORD_START).join(' ');
    transcript.scrollTop = transcript.scrollHeight;
    stats.pieces += 1;
  } else if (kind === ERROR) {
    const error = JSON.parse(new TextDecoder().decode(data.subarray(1)));
    stats.error = error.error;
    if (error.fatal) stop(`${stats.state === 'connecting' ? 'no call' : 'the call ended'}: ${error.error}`);
    else say(`error: ${error.error}`);
  }
}

async function openAudio(current, handshake) {
  const context = new AudioContext({sampleRate: handshake.sample_rate, latencyHint: 'interactive'});
  current.context = context;
  const module = URL.createObjectURL(new Blob([WORKLET], {type: 'application/javascript'}));
  await context.audioWorklet.addModule(module);
  URL.revokeObjectURL(module);
  if (call !== current) { context.close(); return; }  // stopped meanwhile
  const stream = await navigator.mediaDevices.getUserMedia({audio: {
    channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true}});
  current.stream = stream;
  if (call !== current) { stream.getTracks().forEach((track) => track.stop()); return; }  // stopped meanwhile
  const frameSize = handshake.frame_size;
  const capture = new AudioWorkletNode(context, 'delaykit-capture', {processorOptions: {frameSize}});
  const player = new AudioWorkletNode(context, 'delaykit-player', {outputChannelCount: [1], processorOptions: {
    capacity: 10 * handshake.sample_rate, prebuffer: 2 * frameSize}});
  capture.port.onmessage = (event) => {
    if (current.socket.readyState !== WebSocket.OPEN) return;
    send(current.socket, event.data);
    remember('you', event.data);
    stats.sent += 1;
    stats.sentTimes.push(performance.now());
  };
  player.port.onmessage = () => { stats.underruns += 1; };
  current.player = player;
  context.createMediaStreamSource(stream).connect(capture);
  capture.connect(context.destination);  // outputs silence; keeps the capture running
  player.connect(context.destination);
  await context.resume();
  stats.state = 'live';
  say(`live: talking with ${handshake.model || 'the agent'} (${handshake.sample_rate} Hz, ` +
      `${Math.round(1000 * frameSize / handshake.sample_rate)} ms frames); talk over it whenever you like`);
  requestAnimationFrame(draw);
}

function start() {
  if (call) return;
  levels.you = []; levels.agent = [];
  transcript.textContent = '';
  Object.assign(stats, {state: 'connecting', sent: 0, received: 0, pieces: 0, underruns: 0, sentTimes: [],
                        receivedTimes: [], error: null});
  const socket = new WebSocket(chatUrl());
  socket.binaryType = 'arraybuffer';
  call = {socket};
  socket.onmessage = receive;
  socket.onclose = () => { if (call && call.socket === socket) stop(stats.error ? null : 'the connection closed'); };
  socket.onerror = () => say('the connection failed');
  startButton.disabled = true;
  stopButton.disabled = false;
  say('connecting...');
}

function stop(reason) {
  const current = call;
  call = null;
  startButton.disabled = false;
  stopButton.disabled = true;
  stats.state = 'stopped';
  if (reason) say(reason); else if (!stats.error) say('stopped');
  if (!current) return;
  if (current.socket.readyState <= WebSocket.OPEN) current.socket.close(1000, 'stopped');
  if (current.stream) current.stream.getTracks().forEach((track) => track.stop());
  if (current.context) current.context.close();
  draw();
}

startButton.addEventListener('click', start);
stopButton.addEventListener('click', () => stop('stopped'));
window.addEventListener('pagehide', () => stop(null));
draw();
