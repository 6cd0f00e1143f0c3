# Attention patterns: print L{i}.attn_pattern[H] computes head H's weights
# at a stop from L{i}.q and the KV cache, a row per token of the chunk over
# positions 0..pos (each row sums to 1, zeros after it); rows as print's
# slice ([H][ROWS], [H, ROWS], or a slice word), --save, the value history,
# JSON.  At L{i}.q the chunk's K is not computed yet; at L{i}.k it is read
# from the live L{i}.k.  Errors: no run, no head, a head range, a layer out
# of range, q not live, --top.  display shows one at every stop (<not live
# here> while its q is not).
# expect-exit: 1
load models/stories260K.bin --tokenizer models/tok512.bin
set elements 100
print L1.attn_pattern[0]
break L1.q
run "Once upon a time" -n 3
print L1.attn_pattern[0]
print L0.attn_pattern[0][-1]
step
print L1.attn_pattern[5][-1]
step 2
print L1.attn_pattern[5]
print L1.attn_pattern[-3, 1:3]
print L1.attn_pattern [5] [-1]
print $
print L1.attn_pattern[2] --save pat.npy
print L1.attn_pattern
print L1.attn_pattern[8]
print L1.attn_pattern[-9]
print L1.attn_pattern[0:2]
print L7.attn_pattern[0]
print L2.attn_pattern[0]
print L1.attn_pattern[0] --top 3
print L1.attn_pattern[0][7]
delete
break L3.attn
continue
print L3.attn_pattern[0]
print L1.attn_pattern[1]
continue
print L3.attn_pattern[0]
set output json
print L3.attn_pattern[7]
set output text
display L3.attn_pattern[2][-1]
display L4.attn_pattern[0]
display L3.attn_pattern
display L3.attn_pattern[0] --top 1
continue
