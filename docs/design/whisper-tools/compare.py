import sys, numpy as np, ctranslate2, tokenizers, time
sys.path.insert(0,'tools')
from np_whisper import NpWhisper
from faster_whisper.feature_extractor import FeatureExtractor
from faster_whisper.audio import decode_audio
ct2dir, hfdir, prompt_str = sys.argv[1], sys.argv[2], sys.argv[3]
audio=decode_audio('speech16k.wav')
fe=FeatureExtractor(); mel=fe(audio)  # [80, T]
mel=np.pad(mel,((0,0),(0,max(0,3000-mel.shape[1]))))[:, :3000].astype(np.float32)
tok=tokenizers.Tokenizer.from_file(ct2dir+'/tokenizer.json')
prompt=[tok.token_to_id(t) for t in prompt_str.split(',')]
m=ctranslate2.models.Whisper(ct2dir, device='cpu', compute_type='float32')
sv=ctranslate2.StorageView.from_array(mel[None])
r=m.generate(sv,[prompt],beam_size=1,return_scores=True,suppress_blank=False,suppress_tokens=[],max_length=100)[0]
ct_ids=r.sequences_ids[0]
nw=NpWhisper(hfdir); t=time.time(); enc=nw.encode(mel); 
ct_enc=np.array(m.encode(sv, to_cpu=True))[0]
print('encoder out max abs diff vs CT2: %.2e (scale %.2f)'%(np.abs(enc-ct_enc).max(), np.abs(ct_enc).max()))
ids=list(prompt)
for _ in range(100):
    lg=nw.logits(ids,enc)[-1]; nxt=int(lg.argmax()); 
    if nxt==tok.token_to_id('<|endoftext|>'): break
    ids.append(nxt)
np_ids=ids[len(prompt):]
print('numpy greedy tokens == CT2 greedy tokens:', np_ids==ct_ids, len(np_ids), len(ct_ids), '(%.1fs)'%(time.time()-t))
print(' CT2  :', tok.decode(ct_ids)); print(' numpy:', tok.decode(np_ids))
print(' raw ids:', np_ids[:20])
