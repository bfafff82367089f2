# SPDX-License-Identifier: GPL-3.0-or-later
# Part of make-corpus.py (run that): the seeds of every harness other than safetensors.
# Uses here, data_dir, raw(), hdr() from make-corpus.py.
SEP = b'\n#=#=#\n'


def read(*rel):
    with open(os.path.join(data_dir, *rel), 'rb') as f:
        return f.read()


def put(name, seeds):
    d = os.path.join(here, 'corpus', name)
    os.makedirs(d, exist_ok=True)
    for old in glob.glob(os.path.join(d, 'seed-*')):
        os.remove(old)
    for fname, blob in seeds.items():
        with open(os.path.join(d, 'seed-' + fname), 'wb') as f:
            f.write(blob)
    print(f'{len(seeds)} seeds in {d}')


# --- tokenizer: tokenizer.json [SEP text [SEP tokenizer_config.json]] ---
texts = [t.encode() for t in json.loads(read('tokenizers', 'texts.json'))]
seeds = {}
for i, tj in enumerate(sorted(glob.glob(os.path.join(data_dir, 'tokenizers', '*', 'tokenizer.json')))):
    name = os.path.basename(os.path.dirname(tj))
    tok = open(tj, 'rb').read()
    cfg_path = os.path.join(os.path.dirname(tj), 'tokenizer_config.json')
    seeds[name + '.json'] = tok
    for k in range(3):
        t = texts[(i * 7 + k * 13) % len(texts)]
        seeds[f'{name}-text{k}'] = tok + SEP + t
    if os.path.exists(cfg_path):
        seeds[name + '-with-config'] = tok + SEP + texts[i % len(texts)] + SEP + open(cfg_path, 'rb').read()
seeds['llama-model-tokenizer'] = read('models', 'llama-f32', 'tokenizer.json') + SEP + b'Once upon a time' + SEP + read('models', 'llama-f32', 'tokenizer_config.json')
seeds['bad-utf8-text'] = read('tokenizers', 'gpt2', 'tokenizer.json') + SEP + b'abc\xff\xfe \xc3'
seeds['tiny-wordlevel'] = json.dumps({'model': {'type': 'WordLevel', 'vocab': {'a': 0, 'b': 1, '[UNK]': 2}, 'unk_token': '[UNK]'},
                                      'pre_tokenizer': {'type': 'Whitespace'}}).encode() + SEP + b'a b c'
seeds['tiny-bpe'] = json.dumps({'model': {'type': 'BPE', 'vocab': {'a': 0, 'b': 1, 'ab': 2}, 'merges': ['a b']},
                                'added_tokens': [{'id': 3, 'content': '<s>', 'special': True}]}).encode() + SEP + b'abab<s>ba'
put('tokenizer', seeds)

# --- config: config.json ---
seeds = {}
for cj in sorted(glob.glob(os.path.join(data_dir, 'models', '*', 'config.json'))):
    seeds[os.path.basename(os.path.dirname(cj)) + '.json'] = open(cj, 'rb').read()
base = json.loads(read('models', 'llama-f32', 'config.json'))
v = dict(base, rope_scaling={'rope_type': 'llama3', 'factor': 8.0, 'low_freq_factor': 1.0,
                             'high_freq_factor': 4.0, 'original_max_position_embeddings': 8192})
seeds['llama3-rope.json'] = json.dumps(v).encode()
v = dict(base, rope_scaling={'type': 'linear', 'factor': 2.0})
seeds['linear-rope.json'] = json.dumps(v).encode()
v = dict(base, quantization={'group_size': 64, 'bits': 4, 'mode': 'affine'})
seeds['mlx-quantized.json'] = json.dumps(v).encode()
v = dict(base, quantization_config={'quant_method': 'gptq', 'bits': 4})
seeds['hf-quantized.json'] = json.dumps(v).encode()
v = dict(base, eos_token_id=[1, 2, 3], head_dim=None, tie_word_embeddings=True)
seeds['eos-list.json'] = json.dumps(v).encode()
v = {'architectures': ['Qwen3ForCausalLM'], 'model_type': 'qwen3', 'text_config': base}
seeds['nested-text-config.json'] = json.dumps(v).encode()
seeds['bad-zero-heads.json'] = json.dumps(dict(base, num_attention_heads=0)).encode()
seeds['bad-huge.json'] = json.dumps(dict(base, hidden_size=2**31 - 1, num_hidden_layers=2**31 - 1)).encode()
put('config', seeds)

# --- chat-template: template [SEP conversation [SEP extra]] ---
exp = json.loads(read('chat-templates', 'expected.json'))
convs = exp['conversations']
seeds = {}
for i, jp in enumerate(sorted(glob.glob(os.path.join(data_dir, 'chat-templates', '*.jinja')) +
                            glob.glob(os.path.join(data_dir, 'chat-templates', 'unsupported', '*.jinja')))):
    name = os.path.splitext(os.path.basename(jp))[0]
    src = open(jp, 'rb').read()
    for k in range(3):
        c = convs[(i * 5 + k * 7) % len(convs)]
        seeds[f'{name}-{c["name"]}'] = src + SEP + json.dumps(c['messages']).encode() + SEP + json.dumps(c.get('extra', {})).encode()
for k, sn in enumerate(exp['snippets']):
    seeds[f'snippet-{k:03d}'] = sn['source'].encode()
seeds['macro-recursion'] = b'{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{% endif %}x{% endmacro %}{{ f(50) }}'
seeds['deep-nesting'] = b'{{ ' + b'(' * 200 + b'1' + b')' * 200 + b' }}'
seeds['deep-lists'] = b'{{ ' + b'[' * 200 + b']' * 200 + b' }}'
seeds['loop-vars'] = (b'{% for m in messages %}{{ loop.index }}{{ loop.first }}{{ m.role|upper }}{{ m.content|trim|length }}{% endfor %}'
                      b'{% set ns = namespace(x=0) %}{% for i in range(3) %}{% set ns.x = ns.x + i %}{% endfor %}{{ ns.x }}')
put('chat-template', seeds)

# --- dataset: option byte + JSONL (bit 0: chat template; bits 1-3: max_seq_length index) ---
def jsonl(*objs):
    return b''.join(json.dumps(o).encode() + b'\n' for o in objs)

def head_lines(blob, n):
    return b''.join(blob.splitlines(keepends=True)[:n])

seeds = {}
fixtures = {'train': read('train', 'train.jsonl'), 'stories': read('stories', 'train.jsonl'),
            'eval': read('eval', 'eval.jsonl'), 'pref': read('preference', 'tinystories', 'train.jsonl')}
for demo in ('sft', 'preference'):
    p = os.path.join(here, '..', '..', 'data', 'demo', demo, 'train.jsonl')
    if os.path.exists(p):
        fixtures['demo-' + demo] = open(p, 'rb').read()
for name, blob in fixtures.items():
    for opt in (0, 1, 6, 9):
        seeds[f'{name}-opt{opt}'] = bytes([opt]) + head_lines(blob, 6)
msgs = [{'role': 'system', 'content': 'Be brief.'}, {'role': 'user', 'content': 'Hi'},
        {'role': 'assistant', 'content': 'Hello!'}]
seeds['chat'] = b'\x01' + jsonl({'messages': msgs}, {'messages': msgs[1:]})
seeds['chat-no-template'] = b'\x00' + jsonl({'messages': msgs})
seeds['completions'] = b'\x01' + jsonl({'prompt': 'Q?', 'completion': 'A.'}, {'prompt': '', 'completion': 'x'})
seeds['preference-strings'] = b'\x03' + jsonl({'prompt': 'P', 'chosen': 'yes', 'rejected': 'no', 'system': 'S',
                                                'preference_score': 0.5})
seeds['preference-messages'] = b'\x01' + jsonl({'chosen': msgs, 'rejected': msgs[:2] + [{'role': 'assistant', 'content': 'Go away'}]})
seeds['text-unicode'] = b'\x08' + jsonl({'text': 'caf\u00e9 \U0001F600 \u4e2d\u6587'}, {'text': ''})
seeds['bad-mixed-formats'] = b'\x00' + jsonl({'text': 'a'}, {'prompt': 'b', 'completion': 'c'})
seeds['bad-not-object'] = b'\x00' + b'[1,2]\n"x"\n'
seeds['blank-lines'] = b'\x00' + b'\n\n{"text": "a"}\n\n'
put('dataset', seeds)

# --- run-config: a run configuration / recipe JSON ---
seeds = {}
for rp in sorted(glob.glob(os.path.join(data_dir, 'recipes', '*.json'))):
    seeds[os.path.basename(rp)] = open(rp, 'rb').read()
seeds['empty-object.json'] = b'{}'
seeds['schedule-dict.json'] = json.dumps({'lr_schedule': {'name': 'cosine_decay', 'arguments': [1e-5, 100, 0.0],
                                                           'warmup': 10, 'warmup_init': 0.0},
                                          'fine_tune_type': 'dora', 'grad_accumulation_steps': 4}).encode()
seeds['nulls.json'] = json.dumps({'model': None, 'resume_adapter_file': None, 'lr_schedule': None}).encode()
put('run-config', seeds)

# --- adapter: option byte + adapter_config.json + SEP + weights ---
# (bit 0: PEFT file name adapter_model.safetensors; bit 1: no config)
seeds = {}
for ad in sorted(glob.glob(os.path.join(data_dir, 'train', '*'))):
    if not os.path.isdir(ad):
        continue
    name = os.path.basename(ad)
    seeds['peft-' + name] = b'\x01' + open(os.path.join(ad, 'adapter_config.json'), 'rb').read() + SEP + \
        open(os.path.join(ad, 'adapter_model.safetensors'), 'rb').read()

def st(tensors):
    hd, blob = {}, b''
    for tname, (shape, vals) in tensors.items():
        b = struct.pack(f'<{len(vals)}f', *vals)
        hd[tname] = {'dtype': 'F32', 'shape': shape, 'data_offsets': [len(blob), len(blob) + len(b)]}
        blob += b
    return raw(hdr(hd), blob)

mlx_cfg = json.dumps({'fine_tune_type': 'lora', 'num_layers': 1,
                      'lora_parameters': {'rank': 2, 'scale': 10.0, 'dropout': 0.0, 'keys': ['self_attn.q_proj']}}).encode()
mlx_w = st({'model.layers.0.self_attn.q_proj.lora_a': ([4, 2], [0.1] * 8),
            'model.layers.0.self_attn.q_proj.lora_b': ([2, 3], [0.2] * 6)})
seeds['mlx-lora'] = b'\x00' + mlx_cfg + SEP + mlx_w
dora_cfg = mlx_cfg.replace(b'"lora"', b'"dora"')
seeds['mlx-dora'] = b'\x00' + dora_cfg + SEP + st({'model.layers.0.self_attn.q_proj.lora_a': ([4, 2], [0.1] * 8),
                                                    'model.layers.0.self_attn.q_proj.lora_b': ([2, 3], [0.2] * 6),
                                                    'model.layers.0.self_attn.q_proj.m': ([3], [1.0] * 3)})
seeds['mlx-full'] = b'\x00' + mlx_cfg.replace(b'"lora"', b'"full"') + SEP + \
    st({'model.layers.0.self_attn.q_proj.weight': ([3, 4], [0.5] * 12)})
seeds['mlx-no-config'] = b'\x02' + SEP + mlx_w
seeds['peft-tiny'] = b'\x01' + json.dumps({'peft_type': 'LORA', 'r': 2, 'lora_alpha': 4, 'use_rslora': True}).encode() + SEP + \
    st({'base_model.model.model.layers.0.mlp.up_proj.lora_A.weight': ([2, 4], [0.1] * 8),
        'base_model.model.model.layers.0.mlp.up_proj.lora_B.weight': ([3, 2], [0.2] * 6)})
seeds['bad-rank-mismatch'] = b'\x00' + mlx_cfg + SEP + st({'model.layers.0.self_attn.q_proj.lora_a': ([4, 2], [0.1] * 8),
                                                          'model.layers.0.self_attn.q_proj.lora_b': ([3, 3], [0.2] * 9)})
put('adapter', seeds)

# --- gguf: GGUF v3 files written here by hand (the format's own layout) ---
GT = {'u8': 0, 'i8': 1, 'u16': 2, 'i16': 3, 'u32': 4, 'i32': 5, 'f32': 6, 'bool': 7, 'str': 8, 'arr': 9,
      'u64': 10, 'i64': 11, 'f64': 12}

def gstr(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack('<Q', len(b)) + b

def gval(t, v):
    if t == 'str':
        return gstr(v)
    fmt = {'u8': 'B', 'i8': 'b', 'u16': 'H', 'i16': 'h', 'u32': 'I', 'i32': 'i', 'f32': 'f', 'bool': '?',
           'u64': 'Q', 'i64': 'q', 'f64': 'd'}[t]
    return struct.pack('<' + fmt, v)

def gguf(kvs, tensors, version=3, align=32):
    body = b''
    for key, t, v in kvs:
        body += gstr(key) + struct.pack('<I', GT[t])
        if t == 'arr':
            et, items = v
            body += struct.pack('<IQ', GT[et], len(items)) + b''.join(gval(et, x) for x in items)
        else:
            body += gval(t, v)
    infos, data = b'', b''
    for name, gtype, ne, blob in tensors:
        data += b'\0' * ((-len(data)) % align)
        infos += gstr(name) + struct.pack('<I', len(ne)) + b''.join(struct.pack('<Q', n) for n in ne) + \
            struct.pack('<IQ', gtype, len(data))
        data += blob
    head = b'GGUF' + struct.pack('<IQQ', version, len(tensors), len(kvs)) + body + infos
    head += b'\0' * ((-len(head)) % align)
    data += b'\0' * ((-len(data)) % align)  # writers pad the last tensor too
    return head + data

f32 = lambda *v: struct.pack(f'<{len(v)}f', *v)
q8_0 = struct.pack('<e', 0.5) + bytes(range(32))
q4_0 = struct.pack('<e', 0.25) + bytes(range(16))
seeds = {}
seeds['small.gguf'] = gguf([('general.architecture', 'str', 'llama'), ('llama.block_count', 'u32', 1),
                            ('llama.rope.freq_base', 'f32', 10000.0),
                            ('tokenizer.ggml.tokens', 'arr', ('str', ['<s>', '</s>', 'a', 'b'])),
                            ('tokenizer.ggml.scores', 'arr', ('f32', [0.0, 0.0, -1.0, -2.0])),
                            ('tokenizer.ggml.token_type', 'arr', ('i32', [3, 3, 1, 1]))],
                           [('token_embd.weight', 0, [2, 4], f32(*range(8))),
                            ('blk.0.attn_q.weight', 8, [32, 1], q8_0),
                            ('blk.0.ffn_up.weight', 2, [32, 1], q4_0),
                            ('output_norm.weight', 1, [2], struct.pack('<2e', 1.0, 1.0))])
seeds['all-kv-types.gguf'] = gguf([(f'k.{t}', t, 1 if t not in ('f32', 'f64', 'bool', 'str') else
                                    (1.5 if t in ('f32', 'f64') else (True if t == 'bool' else 'x')))
                                   for t in GT if t != 'arr'] +
                                  [('k.nested', 'arr', ('u8', [1, 2, 3])), ('k.empty', 'arr', ('str', []))], [])
seeds['aligned-64.gguf'] = gguf([('general.alignment', 'u32', 64)], [('t', 0, [3], f32(1, 2, 3))], align=64)
seeds['v2.gguf'] = gguf([('general.name', 'str', 'v2')], [], version=2)
seeds['empty.gguf'] = gguf([], [])
seeds['bad-magic.gguf'] = b'GGUX' + seeds['empty.gguf'][4:]
seeds['bad-truncated.gguf'] = seeds['small.gguf'][:-5]
seeds['bad-huge-count.gguf'] = b'GGUF' + struct.pack('<IQQ', 3, 2**62, 2**62)
seeds['bad-dup-tensor.gguf'] = gguf([], [('t', 0, [1], f32(1)), ('t', 0, [1], f32(2))])
put('gguf', seeds)

# --- model: config.json + SEP + model.safetensors (tiny models, dense and MLX-quantized) ---
def tensor_blob(dtype, vals):
    if dtype == 'F32':
        return struct.pack(f'<{len(vals)}f', *vals)
    if dtype == 'BF16':
        return b''.join(struct.pack('<f', v)[2:] for v in vals)
    if dtype == 'U8':
        return bytes(vals)
    if dtype == 'U32':
        return struct.pack(f'<{len(vals)}I', *vals)
    raise ValueError(dtype)

def st_typed(tensors):
    hd, blob = {}, b''
    for tname, (dtype, shape, vals) in tensors.items():
        b = tensor_blob(dtype, vals)
        hd[tname] = {'dtype': dtype, 'shape': shape, 'data_offsets': [len(blob), len(blob) + len(b)]}
        blob += b
    return raw(hdr(hd), blob)

def tiny_model(arch='LlamaForCausalLM', mtype='llama', quant=None, qk_norm=False, bias=False, tied=True):
    C, H, KV, D, I, V = 32, 2, 1, 16, 32, 16
    cfg = {'architectures': [arch], 'model_type': mtype, 'hidden_size': C, 'num_attention_heads': H,
           'num_key_value_heads': KV, 'head_dim': D, 'intermediate_size': I, 'num_hidden_layers': 1,
           'vocab_size': V, 'max_position_embeddings': 64, 'rms_norm_eps': 1e-6, 'rope_theta': 10000.0,
           'tie_word_embeddings': tied, 'bos_token_id': 1, 'eos_token_id': 2}
    val = lambda n: [((i * 37) % 17 - 8) / 64.0 for i in range(n)]
    t = {'model.embed_tokens.weight': ('BF16', [V, C], val(V * C)), 'model.norm.weight': ('BF16', [C], [1.0] * C)}
    if not tied:
        t['lm_head.weight'] = ('BF16', [V, C], val(V * C))
    p = 'model.layers.0.'
    t[p + 'input_layernorm.weight'] = ('BF16', [C], [1.0] * C)
    t[p + 'post_attention_layernorm.weight'] = ('BF16', [C], [1.0] * C)
    shapes = {'self_attn.q_proj': (H * D, C), 'self_attn.k_proj': (KV * D, C), 'self_attn.v_proj': (KV * D, C),
              'self_attn.o_proj': (C, H * D), 'mlp.gate_proj': (I, C), 'mlp.up_proj': (I, C), 'mlp.down_proj': (C, I)}
    for mod, (o, i) in shapes.items():
        if quant and mod in ('self_attn.q_proj', 'mlp.up_proj'):
            bits, gs = quant['bits'], quant['group_size']
            t[p + mod + '.weight'] = ('U32', [o, i * bits // 32], [(k * 2654435761) & 0xffffffff for k in range(o * i * bits // 32)])
            if quant.get('mode', 'affine') == 'mxfp4':
                t[p + mod + '.scales'] = ('U8', [o, i // gs], [120] * (o * i // gs))  # E8M0
            else:
                t[p + mod + '.scales'] = ('BF16', [o, i // gs], [0.01] * (o * i // gs))
            if quant.get('mode', 'affine') == 'affine':
                t[p + mod + '.biases'] = ('BF16', [o, i // gs], [-0.05] * (o * i // gs))
        else:
            t[p + mod + '.weight'] = ('BF16', [o, i], val(o * i))
    if bias:
        for mod in ('q_proj', 'k_proj', 'v_proj'):
            t[p + 'self_attn.' + mod + '.bias'] = ('BF16', [shapes['self_attn.' + mod][0]], [0.0] * shapes['self_attn.' + mod][0])
    if qk_norm:
        t[p + 'self_attn.q_norm.weight'] = ('BF16', [D], [1.0] * D)
        t[p + 'self_attn.k_norm.weight'] = ('BF16', [D], [1.0] * D)
    if quant:
        cfg['quantization'] = quant
    return json.dumps(cfg, indent=1).encode() + SEP + st_typed(t)

seeds = {}
seeds['llama-dense'] = tiny_model()
seeds['llama-untied'] = tiny_model(tied=False)
seeds['qwen2-bias'] = tiny_model('Qwen2ForCausalLM', 'qwen2', bias=True)
seeds['qwen3-qknorm'] = tiny_model('Qwen3ForCausalLM', 'qwen3', qk_norm=True)
seeds['mlx-affine-4bit'] = tiny_model(quant={'group_size': 32, 'bits': 4})
seeds['mlx-affine-8bit-override'] = tiny_model(quant={'group_size': 32, 'bits': 8,
                                                     'model.layers.0.mlp.up_proj': {'group_size': 32, 'bits': 8}})
seeds['mlx-mxfp4'] = tiny_model(quant={'group_size': 32, 'bits': 4, 'mode': 'mxfp4'})
seeds['bad-missing-tensor'] = tiny_model().replace(b'"num_hidden_layers": 1', b'"num_hidden_layers": 2')
put('model', seeds)

# --- gguf-model: a GGUF file as an input model (tiny llama / qwen2 / qwen3, F32/F16/Q8_0/Q4_0) ---
def gguf_model(arch='llama', C=8, I=16, H=2, KVH=1, D=4, tok='llama', wtype=0, tied=True, extra_kv=()):
    V = 8
    vals = lambda n, k=0: [((j * 37 + k * 11) % 17 - 8) / 16.0 for j in range(n)]
    def blob(gtype, ne):
        n = 1
        for x in ne:
            n *= x
        if gtype == 0:
            return f32(*vals(n))
        if gtype == 1:
            return struct.pack(f'<{n}e', *vals(n))
        if gtype == 8:   # Q8_0: per 32 values an f16 scale and 32 int8
            return b''.join(struct.pack('<e', 0.03) + bytes((j * 7 + b) % 256 for j in range(32)) for b in range(n // 32))
        if gtype == 2:   # Q4_0: an f16 scale and 16 bytes of nibbles
            return b''.join(struct.pack('<e', 0.05) + bytes((j * 13 + b) % 256 for j in range(16)) for b in range(n // 32))
        raise ValueError(gtype)
    def mat(name, cols, rows):
        t = wtype if cols % 32 == 0 else 0
        return (name, t, [cols, rows], blob(t, [cols, rows]))
    def vec(name, n, v=1.0):
        return (name, 0, [n], f32(*([v] * n)))
    tensors = [mat('token_embd.weight', C, V), vec('output_norm.weight', C)]
    if not tied:
        tensors.append(mat('output.weight', C, V))
    p = 'blk.0.'
    tensors += [vec(p + 'attn_norm.weight', C), vec(p + 'ffn_norm.weight', C),
                mat(p + 'attn_q.weight', C, H * D), mat(p + 'attn_k.weight', C, KVH * D),
                mat(p + 'attn_v.weight', C, KVH * D), mat(p + 'attn_output.weight', H * D, C),
                mat(p + 'ffn_gate.weight', C, I), mat(p + 'ffn_up.weight', C, I),
                mat(p + 'ffn_down.weight', I, C)]
    if arch == 'qwen2':
        tensors += [vec(p + 'attn_q.bias', H * D, 0.0), vec(p + 'attn_k.bias', KVH * D, 0.0),
                    vec(p + 'attn_v.bias', KVH * D, 0.0)]
    if arch == 'qwen3':
        tensors += [vec(p + 'attn_q_norm.weight', D), vec(p + 'attn_k_norm.weight', D)]
    kvs = [('general.architecture', 'str', arch), ('general.name', 'str', 'tiny'),
           (arch + '.context_length', 'u32', 64), (arch + '.embedding_length', 'u32', C),
           (arch + '.block_count', 'u32', 1), (arch + '.feed_forward_length', 'u32', I),
           (arch + '.attention.head_count', 'u32', H), (arch + '.attention.head_count_kv', 'u32', KVH),
           (arch + '.attention.key_length', 'u32', D), (arch + '.attention.value_length', 'u32', D),
           (arch + '.rope.freq_base', 'f32', 10000.0),
           (arch + '.attention.layer_norm_rms_epsilon', 'f32', 1e-5)]
    if tok == 'llama':
        toks = ['<unk>', '<s>', '</s>', '\u2581O', 'n', 'ce', '<0x41>', '\u2581']
        kvs += [('tokenizer.ggml.model', 'str', 'llama'), ('tokenizer.ggml.tokens', 'arr', ('str', toks)),
                ('tokenizer.ggml.scores', 'arr', ('f32', [0.0, 0.0, 0.0, -1.0, -2.0, -3.0, 0.0, -4.0])),
                ('tokenizer.ggml.token_type', 'arr', ('i32', [2, 3, 3, 1, 1, 1, 6, 1])),
                ('tokenizer.ggml.bos_token_id', 'u32', 1), ('tokenizer.ggml.eos_token_id', 'u32', 2),
                ('tokenizer.ggml.unknown_token_id', 'u32', 0), ('tokenizer.ggml.add_bos_token', 'bool', True)]
    else:
        toks = ['O', 'n', 'c', 'e', '\u0120', 'On', 'ce', '<|endoftext|>']
        kvs += [('tokenizer.ggml.model', 'str', 'gpt2'), ('tokenizer.ggml.pre', 'str', 'qwen2'),
                ('tokenizer.ggml.tokens', 'arr', ('str', toks)),
                ('tokenizer.ggml.token_type', 'arr', ('i32', [1, 1, 1, 1, 1, 1, 1, 3])),
                ('tokenizer.ggml.merges', 'arr', ('str', ['O n', 'c e'])),
                ('tokenizer.ggml.eos_token_id', 'u32', 7),
                ('tokenizer.chat_template', 'str',
                 "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}")]
    kvs += list(extra_kv)
    return gguf(kvs, tensors)

seeds = {}
seeds['llama-f32.gguf'] = gguf_model()
seeds['llama-f16-untied.gguf'] = gguf_model(wtype=1, tied=False)
seeds['llama-q8_0.gguf'] = gguf_model(C=32, I=32, H=4, KVH=2, D=8, wtype=8)
seeds['llama-q4_0.gguf'] = gguf_model(C=32, I=32, H=4, KVH=2, D=8, wtype=2)
seeds['llama-linear-rope.gguf'] = gguf_model(extra_kv=[('llama.rope.scaling.type', 'str', 'linear'),
                                                       ('llama.rope.scaling.factor', 'f32', 2.0)])
seeds['qwen2-bias-bpe.gguf'] = gguf_model('qwen2', tok='gpt2')
seeds['qwen3-qknorm-bpe.gguf'] = gguf_model('qwen3', tok='gpt2', tied=False)
seeds['bad-arch.gguf'] = gguf_model('gpt2')
seeds['bad-heads.gguf'] = gguf_model(H=3, KVH=2)
put('gguf-model', seeds)

# --- hub-listing: the Hub API's answer to /api/models/{repo}/revision/{rev} ---
sha = '0123456789abcdef0123456789abcdef01234567'
files = ['.gitattributes', 'README.md', 'config.json', 'generation_config.json', 'model.safetensors',
         'special_tokens_map.json', 'tokenizer.json', 'tokenizer_config.json', 'docs/README.md']
def listing(sib, **extra):
    d = {'_id': '65f0c0ffee', 'id': 'lathe-test/tinystories-656k', 'private': False, 'sha': sha,
         'siblings': sib}
    d.update(extra)
    return json.dumps(d).encode()
seeds = {}
seeds['test-server'] = listing([{'rfilename': f} for f in files])
seeds['full-api'] = listing([{'rfilename': f} for f in files], author='lathe-test', lastModified='2026-01-02T03:04:05.000Z',
                            gated=False, disabled=False, downloads=12, likes=3, tags=['safetensors', 'llama', 'text-generation'],
                            pipeline_tag='text-generation', library_name='transformers',
                            config={'architectures': ['LlamaForCausalLM'], 'model_type': 'llama'},
                            cardData={'license': 'mit'}, safetensors={'parameters': {'F32': 656000}, 'total': 656000},
                            createdAt='2026-01-01T00:00:00.000Z', usedStorage=2624000)
seeds['nested-unicode'] = listing([{'rfilename': 'a/b/c/\u00e9t\u00e9.json'}, {'rfilename': 'x y/z'}])
seeds['empty-siblings'] = listing([])
seeds['bad-dotdot'] = listing([{'rfilename': '../../etc/passwd'}])
seeds['bad-absolute'] = listing([{'rfilename': '/etc/passwd'}])
seeds['bad-backslash'] = listing([{'rfilename': 'a\\..\\b'}])
seeds['bad-no-sha'] = json.dumps({'siblings': [{'rfilename': 'a'}]}).encode()
seeds['bad-sha-slash'] = listing([{'rfilename': 'a'}]).replace(sha.encode(), b'../x')
seeds['bad-siblings-object'] = json.dumps({'sha': sha, 'siblings': {'rfilename': 'a'}}).encode()
seeds['bad-rfilename-number'] = listing([{'rfilename': 1}])
seeds['bad-not-json'] = b'<html>502 Bad Gateway</html>'
put('hub-listing', seeds)
