"""Compression codecs on blocks of history.jsonl text (rows as benches/mirror_history.rs writes
them, 128 KiB blocks): ratio and single-core speed, to choose the mirror's block codec.

Run: .venv/bin/python integration/bench/codecs.py   (needs pyarrow, which the venv has)
"""
import time, pyarrow as pa
def row(step):
    loss = "NaN" if step % 97 == 0 else repr(2.0 / (1.0 + step * 1e-4))
    s = '{"_step":%d,"_runtime":%.3f,"_timestamp":%.6f,"loss":%s,"lr":%r,"epoch":%d' % (
        step, step * 0.05, 1.7e9 + step * 0.05, loss, 1e-3 * 0.5 ** (step // 100000), step // 10000)
    for k in range(18):
        v = ((step * 2654435761 + k * 40503) % 1000003) / 1000003.0
        s += ',"train/metric_%02d":%r' % (k, v)
    return s + "}\n"
blocks = []
step = 0
for b in range(300):
    t = "".join(row(step + i) for i in range(170))
    step += 170
    blocks.append(t.encode()[:131072])
total = sum(map(len, blocks))
print("text", total, "bytes in", len(blocks), "blocks of ~", total // len(blocks))
for codec, level in [("zstd", -3), ("zstd", 1), ("zstd", 3), ("zstd", 6), ("lz4", None), ("gzip", 1)]:
    c = pa.Codec(codec, compression_level=level) if level is not None else pa.Codec(codec)
    t0 = time.process_time(); out = [c.compress(b) for b in blocks]; t1 = time.process_time()
    n = sum(o.size for o in out)
    d0 = time.process_time()
    for o, b in zip(out, blocks): c.decompress(o, decompressed_size=len(b))
    d1 = time.process_time()
    print(f"{codec:5} level {level!s:>4}: ratio {n/total:.3f}  compress {total/(t1-t0)/1e6:6.0f} MB/s  decompress {total/(d1-d0)/1e6:6.0f} MB/s")
