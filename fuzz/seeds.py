"""Writes the named seed files of fuzz/corpus from the real files (run from the project root).

The shared data sets are cut to a few samples; the journal seeds come from
`nas search --space search_spaces/mlp.ron --trials 2 --results /tmp/x --no-final`.
"""
import struct, pathlib, shutil
S = pathlib.Path('/work/shared/datasets'); C = pathlib.Path('fuzz/corpus')
for f in pathlib.Path('search_spaces').glob('*.ron'):
    shutil.copy(f, C/'space'/f.name)
(C/'space'/'tiny_cnn.ron').write_text('(task: Classification, model: Cnn((stages: Fixed(1), block: Choice([Dense, Separable]), expansion: Fixed(2), growth_rate: Fixed(4))), augment: (shift: Fixed(1)))')
(C/'space'/'regression.ron').write_text('(task: Regression, data: "diabetes", model: Mlp((depth: Fixed(0))), train: (optimizer: Fixed(Sgd), momentum: Fixed(0.5)))')

def idx(elem, dims, payload):
    return struct.pack('>BBBB', 0, 0, elem, len(dims)) + b''.join(struct.pack('>I', d) for d in dims) + payload
def head(path, n):
    b = path.read_bytes(); nd = b[3]; dims = list(struct.unpack('>%dI' % nd, b[4:4+4*nd]))
    size = {8:1, 9:1, 11:2, 12:4, 13:4, 14:8}[b[2]]
    per = 1
    for d in dims[1:]: per *= d
    n = min(n, dims[0]); dims[0] = n
    return idx(b[2], dims, b[4+4*nd:4+4*nd+n*per*size])
def pair(f, t):
    return struct.pack('>I', len(f)) + f + t
for name, fx, tx in [('iris','train-features-idx2-float','train-labels-idx1-ubyte'),
                     ('diabetes','train-features-idx2-float','train-targets-idx1-float'),
                     ('digits','train-images-idx3-ubyte','train-labels-idx1-ubyte')]:
    for part, pre in [('train','train-'), ('test','t10k-')]:
        fx2, tx2 = fx.replace('train-', pre), tx.replace('train-', pre)
        n = 12 if name == 'digits' else 40
        (C/'idx'/f'{name}_{part}').write_bytes(pair(head(S/name/'idx'/fx2, n), head(S/name/'idx'/tx2, n)))
# Element types the shared files do not use: i8, i16, i32 and f64.
(C/'idx'/'int_types').write_bytes(pair(idx(0x0B, [2, 2], struct.pack('>4h', -3, 7, 1, 2)), idx(0x0C, [2], struct.pack('>2i', 0, 1))))
(C/'idx'/'f64_sbyte').write_bytes(pair(idx(0x0E, [2, 1, 2], struct.pack('>4d', 1.5, 2, 3, 4)), idx(0x09, [2, 1], bytes([1, 0]))))
for name in ['iris', 'diabetes', 'digits']:
    for part in ['train', 'test']:
        lines = (S/name/'csv'/f'{part}.csv').read_text().splitlines()
        keep = 12 if name == 'digits' else 40
        (C/'csv'/f'{name}_{part}.csv').write_text('\n'.join(lines[:keep]) + '\n')
(C/'csv'/'named_classes.csv').write_text('\ufeffa, "b,c" ,species\n1,2,"setosa"\n3,4.5e0,"vir""ginica"\n\n5,-6,setosa\r\n')
(C/'csv'/'other_column.csv').write_text('y,x1,x2\n10,0.1,0.2\n-1,0.3,0.4\n2.5,0.5,0.6\n')

journal = pathlib.Path('/tmp/x/mlp/journal.log')
if journal.exists():
    j = journal.read_bytes()
    (C/'journal'/'two_trials.log').write_bytes(j)
    lines = j.split(b'\n')
    (C/'journal'/'header_only.log').write_bytes(b'\n'.join(lines[:8]) + b'\n')
    # A trial left running (its owner gone) and a torn last line, as a killed writer leaves them.
    running = [l for l in lines if any(b'"op_code":%d' % k in l for k in (0, 3, 4, 5, 6))][:12]
    (C/'journal'/'running.log').write_bytes(b'\n'.join(running) + b'\n' + lines[-2][:20])
