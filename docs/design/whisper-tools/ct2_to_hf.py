"""Convert a CTranslate2 WhisperSpec model.bin (float16/float32) to HF-named f32 safetensors."""
import sys, json, numpy as np
sys.path.insert(0, __file__.rsplit('/',1)[0])
from ct2parse import parse
from safetensors.numpy import save_file
def f32(a):
    return a.astype(np.float32)
def convert(src):
    ver, name, rev, V, aliases, _ = parse(src, load=True)
    assert name == 'WhisperSpec', name
    for k,v in list(V.items()):
        if v.dtype == np.int8 and v.ndim > 0: raise SystemExit('int8-quantized weights: need *_scale dequant: '+k)
    out = {}
    def lin(src, dst, bias=True):
        out[dst+'.weight'] = f32(V[src+'/weight'])
        if bias: out[dst+'.bias'] = f32(V[src+'/bias'])
    def ln(src, dst):
        out[dst+'.weight'] = f32(V[src+'/gamma']); out[dst+'.bias'] = f32(V[src+'/beta'])
    def split(src, dsts, has_bias):
        w = f32(V[src+'/weight']); b = f32(V[src+'/bias']); n = len(dsts); d = w.shape[0]//n
        for j,(dst,hb) in enumerate(zip(dsts,has_bias)):
            out[dst+'.weight'] = w[j*d:(j+1)*d].copy()
            if hb: out[dst+'.bias'] = b[j*d:(j+1)*d].copy()
            else: assert not b[j*d:(j+1)*d].any(), 'expected zero k bias'
    for side in ('encoder','decoder'):
        p = 'model.'+side
        n = len({k.split('/')[1] for k in V if k.startswith(side+'/layer_') and k.split('/')[1][6:].isdigit()})
        out[p+'.embed_positions.weight'] = f32(V[side+'/position_encodings/encodings'])
        ln(side+'/layer_norm', p+'.layer_norm')
        for i in range(n):
            s = f'{side}/layer_{i}'; d = f'{p}.layers.{i}'
            split(s+'/self_attention/linear_0', [d+'.self_attn.q_proj', d+'.self_attn.k_proj', d+'.self_attn.v_proj'], [True, False, True])
            lin(s+'/self_attention/linear_1', d+'.self_attn.out_proj')
            ln(s+'/self_attention/layer_norm', d+'.self_attn_layer_norm')
            if side == 'decoder':
                lin(s+'/attention/linear_0', d+'.encoder_attn.q_proj')
                split(s+'/attention/linear_1', [d+'.encoder_attn.k_proj', d+'.encoder_attn.v_proj'], [False, True])
                lin(s+'/attention/linear_2', d+'.encoder_attn.out_proj')
                ln(s+'/attention/layer_norm', d+'.encoder_attn_layer_norm')
            lin(s+'/ffn/linear_0', d+'.fc1'); lin(s+'/ffn/linear_1', d+'.fc2')
            ln(s+'/ffn/layer_norm', d+'.final_layer_norm')
    for c in ('conv1','conv2'):
        lin('encoder/'+c, 'model.encoder.'+c)
    out['model.decoder.embed_tokens.weight'] = f32(V['decoder/embeddings/weight'])
    emb = out['model.decoder.embed_tokens.weight']
    cfg = dict(num_mel_bins=emb.shape[0] and out['model.encoder.conv1.weight'].shape[1],
               max_source_positions=out['model.encoder.embed_positions.weight'].shape[0],
               d_model=emb.shape[1], encoder_attention_heads=int(V['encoder/num_heads']),
               encoder_layers=len([k for k in out if k.startswith('model.encoder.layers.') and k.endswith('fc1.weight')]),
               vocab_size=emb.shape[0], max_target_positions=out['model.decoder.embed_positions.weight'].shape[0],
               decoder_attention_heads=int(V['decoder/num_heads']),
               decoder_layers=len([k for k in out if k.startswith('model.decoder.layers.') and k.endswith('fc1.weight')]))
    return out, cfg
if __name__ == '__main__':
    out, cfg = convert(sys.argv[1])
    ct2cfg = json.load(open(sys.argv[1].rsplit('/',1)[0]+'/config.json'))
    cfg['suppress_tokens'] = ct2cfg['suppress_ids']
    save_file(out, sys.argv[2]); json.dump(cfg, open(sys.argv[3],'w'), indent=1)
    print(cfg, len(out), 'tensors', sum(v.size for v in out.values()), 'params')
