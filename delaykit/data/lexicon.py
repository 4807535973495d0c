"""Extra words for the sentence generator's ``wide`` vocabulary.

The base vocabulary of :mod:`delaykit.data.sentences` has a few dozen nouns, verbs and names per slot, so a
recognizer trained on it has heard every word it can spell many times and learns little about spelling a
word from its sound. ``SentenceConfig(vocabulary="wide")`` adds the words below to the same slots (the
held-out split's names and places are never among them), several times as many word forms in all. The base
vocabulary is unchanged, so corpora made before this module existed are remade byte-identically.
"""

from __future__ import annotations

WIDE_FIRST_NAMES = (
    "Aaron Abigail Adrian Alan Albert Alexander Alfred Alison Andrea Andrew Angela Anita Anna Anthony Antonio "
    "Barbara Bernard Bianca Brandon Brenda Brian Bridget Caleb Camille Carl Caroline Catherine Charles "
    "Charlotte Christopher Claire Colin Craig Cynthia Damian Dennis Derek Dorothy Douglas Duncan Eileen "
    "Eleanor Elias Elliot Emily Eric Esther Eugene Evelyn Frances Francis Frank Frederick Gavin Gemma Gerald "
    "Gloria Gordon Gregory Hamish Harold Hazel Hector Hugo Irene Isaac Jacob James Janet Jasmine Jason "
    "Jennifer Jeremy Jessica Joel Jonathan Joseph Joyce Judith Justin Katherine Keith Kimberly Lars Lena "
    "Leonard Lewis Lillian Linda Lorenzo Louis Lydia Malcolm Marcus Margaret Marion Matthew Maurice Megan "
    "Melissa Michael Miriam Monica Nathan Neil Nicholas Nora Norman Patrick Pauline Philip Rebecca Richard "
    "Roger Roland Rosa Russell Sally Sandra Sebastian Sharon Simon Sophie Stanley Steven Susan Sylvia "
    "Teresa Timothy Trevor Vincent Vivian Warren Yvonne"
).split()
WIDE_SURNAMES = (
    "Abbott Adams Allen Armstrong Atkinson Bailey Barnes Barrett Bell Bishop Blake Booth Bradley Brooks "
    "Burton Campbell Chapman Collins Cooper Crawford Cunningham Davies Dixon Edwards Elliott Ferguson "
    "Foster Fox Gibson Graham Grant Gray Hall Hamilton Hansen Hart Hawkins Henderson Hill Holmes Howard "
    "Hudson Hunt Jackson Jordan Kennedy Knight Lawrence Lee Lewis Marshall Mason Matthews Miller Moore "
    "Murphy Murray Nelson Newman Owens Parker Pearson Perry Phillips Porter Powell Price Reed Reynolds "
    "Richards Riley Rogers Ross Russell Saunders Shaw Simpson Spencer Stevens Stewart Stone Taylor Tucker "
    "Walker Ward Watson Webb Wells West White Williams Wilson Wood Wright"
).split()
WIDE_PLACES = (
    "Adelaide Amman Antwerp Atlanta Baltimore Bangkok Barcelona Beirut Belfast Bergen Bologna Bordeaux "
    "Brisbane Bristol Bucharest Budapest Calgary Casablanca Chennai Cologne Dallas Detroit Dresden Dubai "
    "Durban Florence Frankfurt Geneva Genoa Granada Hamburg Hanoi Havana Jakarta Karachi Kiev Krakow Leeds "
    "Leipzig Lille Liverpool Lyon Manila Milan Minneapolis Montevideo Moscow Munich Nagoya Nantes Nashville "
    "Newcastle Oxford Palermo Perth Philadelphia Phoenix Pittsburgh Porto Quebec Riga Rotterdam Salzburg "
    "Seville Shanghai Sofia Stuttgart Taipei Tehran Toulouse Turin Valencia Venice Verona Vilnius Winnipeg "
    "Yokohama Zagreb"
).split()
WIDE_PEOPLE = (
    "accountant actor artist athlete banker barber butcher cashier cleaner coach dancer designer detective "
    "editor electrician firefighter fisherman guard guide hairdresser historian inspector janitor jeweller "
    "journalist lecturer lifeguard merchant miner nanny novelist optician pharmacist photographer poet "
    "porter postman priest professor programmer receptionist sailor sculptor secretary shepherd soldier "
    "surgeon tailor technician translator vet volunteer"
).split()
WIDE_THINGS = (
    "anchor backpack balloon bandage barrel bench blender bowl bracelet cabinet calendar "
    "carpet carrot cushion compass cookie crayon drawer drum eraser fan feather fence flag flashlight fork "
    "frame glove helmet hose jar jug kite lantern lemon magnet medal microphone napkin needle onion "
    "oven pan pillow pepper pillar plant pocket puzzle quilt rake ribbon rope ruler saucer "
    "sofa sponge stamp statue stool sweater tablet tent thermometer towel tray "
    "trumpet vase violin wagon whistle wheel"
).split()
WIDE_ABSTRACT = (
    "agreement announcement argument chance choice complaint conversation crisis discovery discussion "
    "effort excuse explanation festival habit invitation memory opinion opportunity proposal puzzle "
    "rumour strategy suggestion surprise tradition victory warning"
).split()
WIDE_ADJECTIVES = (
    "absurd awkward bitter brave calm cheerful clever clumsy cosy crowded delicate eager elegant enormous "
    "fragile generous glorious graceful grumpy handsome hollow honest humble huge icy jolly juicy lazy "
    "lively lonely loyal magnificent mysterious nervous obvious odd polite precious proud rare rusty "
    "sensible sharp shy silly smooth sour steep sticky stubborn tiny tidy valuable vivid wise"
).split()
WIDE_ADVERBS = (
    "briefly calmly cheerfully eagerly fairly gladly honestly instantly lazily merrily neatly openly "
    "proudly rapidly recently seriously silently softly warmly wisely"
).split()
WIDE_VERBS_T = [
    tuple(v.split(","))
    for v in (
        "build,builds,built,building catch,catches,caught,catching "
        "choose,chooses,chose,choosing deliver,delivers,delivered,delivering draw,draws,drew,drawing "
        "fold,folds,folded,folding guard,guards,guarded,guarding hang,hangs,hung,hanging "
        "measure,measures,measured,measuring mend,mends,mended,mending polish,polishes,polished,polishing "
        "print,prints,printed,printing protect,protects,protected,protecting repair,repairs,repaired,repairing "
        "return,returns,returned,returning share,shares,shared,sharing steal,steals,stole,stealing "
        "sweep,sweeps,swept,sweeping weigh,weighs,weighed,weighing wrap,wraps,wrapped,wrapping "
        "write,writes,wrote,writing"
    ).split()
]
WIDE_VERBS_I = [
    tuple(v.split(","))
    for v in (
        "argue,argues,argued,arguing celebrate,celebrates,celebrated,celebrating climb,climbs,climbed,climbing "
        "cough,coughs,coughed,coughing cry,cries,cried,crying hesitate,hesitates,hesitated,hesitating "
        "jog,jogs,jogged,jogging kneel,kneels,knelt,kneeling listen,listens,listened,listening "
        "pray,prays,prayed,praying shiver,shivers,shivered,shivering smile,smiles,smiled,smiling "
        "study,studies,studied,studying vote,votes,voted,voting wander,wanders,wandered,wandering "
        "yawn,yawns,yawned,yawning"
    ).split()
]
WIDE_LOCATIONS = (
    "aquarium bank barn cafe canteen cathedral cellar clinic cottage courtyard dock embassy garage gallery "
    "greenhouse gym hall island jungle kiosk laboratory lake meadow mill orchard palace pharmacy playground "
    "prison pub restaurant stable studio supermarket swamp temple tower tunnel university valley warehouse "
    "workshop zoo"
).split()
