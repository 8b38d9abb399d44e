import struct, sys, numpy as np
DT = {0:('float32',4),1:('int8',1),2:('int16',2),3:('int32',4),4:('float16',2),5:('bfloat16',2)}
def rs(f):
    n, = struct.unpack('<H', f.read(2)); s = f.read(n); return s[:-1].decode()
def parse(path, load=False):
    out = {}
    with open(path,'rb') as f:
        ver, = struct.unpack('<I', f.read(4))
        name = rs(f) if ver >= 2 else ''
        rev, = struct.unpack('<I', f.read(4)) if ver >= 2 else (1,)
        n, = struct.unpack('<I', f.read(4))
        for _ in range(n):
            vn = rs(f); nd, = struct.unpack('<B', f.read(1))
            shape = struct.unpack('<%dI'%nd, f.read(4*nd))
            dt, = struct.unpack('<B', f.read(1)); nb, = struct.unpack('<I', f.read(4))
            off = f.tell()
            if load:
                raw = f.read(nb)
                out[vn] = np.frombuffer(raw, dtype=DT[dt][0] if dt!=5 else np.uint16).reshape(shape)
            else:
                f.seek(nb,1); out[vn]=(shape, DT[dt][0], nb, off)
        na, = struct.unpack('<I', f.read(4))
        aliases = [(rs(f), rs(f)) for _ in range(na)]
        rest = f.read()
    return ver, name, rev, out, aliases, len(rest)
if __name__ == '__main__':
    ver, name, rev, vars_, aliases, rest = parse(sys.argv[1])
    print('binary_version', ver, 'spec', name, 'revision', rev, 'nvars', len(vars_), 'naliases', len(aliases), 'trailing', rest)
    from collections import Counter
    print('dtypes', Counter(v[1] for v in vars_.values()))
    for k,v in vars_.items():
        if '/layer_' in k and not ('layer_0/' in k): continue
        print(k, v[0], v[1])
    print('aliases', aliases)
