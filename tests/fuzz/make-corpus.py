#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
# Writes the seed corpora of the fuzz harnesses (tests/fuzz/corpus/NAME/) from the fixtures
# under tests/data and small hand-made files. Seeds are named seed-*; regression inputs of
# fixed crashes (crash-*, kept by hand) are never touched.
#
# safetensors: small valid files in the layouts real writers produce (Rust/PyTorch padded,
# MLX unpadded with a null __metadata__) and one of each corruption the reference rejects.
import glob, json, os, struct, sys

here = os.path.dirname(os.path.abspath(__file__))
data_dir = os.path.join(here, '..', 'data')
out = os.path.join(here, 'corpus', 'safetensors')
os.makedirs(out, exist_ok=True)

def raw(header: bytes, data: bytes, pad=True):
    if pad:
        header += b' ' * ((8 - len(header) % 8) % 8)
    return struct.pack('<Q', len(header)) + header + data

def hdr(obj):
    return json.dumps(obj, separators=(',', ':')).encode()

f32x2 = struct.pack('<2f', 1.5, -2.0)
files = {
    'valid-pt.safetensors': raw(hdr({'__metadata__': {'format': 'pt'},
                                     'w': {'dtype': 'F32', 'shape': [2], 'data_offsets': [0, 8]},
                                     'b': {'dtype': 'BF16', 'shape': [1, 2], 'data_offsets': [8, 12]}}),
                                f32x2 + struct.pack('<2H', 0x3f80, 0xc000)),
    'valid-mlx-unpadded.safetensors': raw(hdr({'__metadata__': None,
                                               'a': {'dtype': 'F16', 'shape': [3], 'data_offsets': [0, 6]},
                                               'b': {'dtype': 'I64', 'shape': [1], 'data_offsets': [6, 14]}}),
                                          struct.pack('<3H', 0x3c00, 0x0001, 0x7e00) + struct.pack('<q', -5), pad=False),
    'valid-empty.safetensors': raw(b'{}', b''),
    'valid-scalar-zero.safetensors': raw(hdr({'s': {'dtype': 'F64', 'shape': [], 'data_offsets': [0, 8]},
                                              'z': {'dtype': 'U8', 'shape': [0, 4], 'data_offsets': [8, 8]}}),
                                         struct.pack('<d', 3.25)),
    'valid-f4-f6.safetensors': raw(hdr({'f4': {'dtype': 'F4', 'shape': [2, 3], 'data_offsets': [0, 3]},
                                        'f6': {'dtype': 'F6_E2M3', 'shape': [4], 'data_offsets': [3, 6]},
                                        'c': {'dtype': 'C64', 'shape': [1], 'data_offsets': [6, 14]}}),
                                   bytes(range(14))),
    'valid-escapes.safetensors': raw(b'{"\\u00e9\\ud83d\\ude00\\n":{"dtype":"BOOL","shape":[1],"data_offsets":[0,1],"x":[1.5e3,{"y":null}]}}', b'\x01'),
    'bad-truncated.safetensors': raw(hdr({'w': {'dtype': 'F32', 'shape': [2], 'data_offsets': [0, 8]}}), f32x2)[:-1],
    'bad-header-too-long.safetensors': struct.pack('<Q', 100_000_001) + b'{}',
    'bad-overlap.safetensors': raw(hdr({'a': {'dtype': 'F32', 'shape': [2], 'data_offsets': [0, 8]},
                                        'b': {'dtype': 'F32', 'shape': [2], 'data_offsets': [4, 12]}}), bytes(12)),
    'bad-gap.safetensors': raw(hdr({'a': {'dtype': 'U8', 'shape': [1], 'data_offsets': [0, 1]},
                                    'b': {'dtype': 'U8', 'shape': [1], 'data_offsets': [2, 3]}}), bytes(3)),
    'bad-dtype.safetensors': raw(hdr({'w': {'dtype': 'F17', 'shape': [1], 'data_offsets': [0, 4]}}), bytes(4)),
    'bad-duplicate.safetensors': raw(b'{"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"w":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}', bytes(2)),
    'bad-metadata.safetensors': raw(b'{"__metadata__":{"format":1}}', b''),
    'bad-overflow.safetensors': raw(b'{"w":{"dtype":"U8","shape":[4294967296,4294967296],"data_offsets":[0,0]}}', b''),
}
for name, data in files.items():
    with open(os.path.join(out, name), 'wb') as f:
        f.write(data)
print(f'{len(files)} files in {out}')

exec(open(os.path.join(here, 'make-corpus-more.py')).read())
