# expect-exit: 1
# record (run_with_cache): the rows of chosen sites at every position of the
# last run, read after the run with print rec::SITE[POS] (a row per
# position), saved, in JSON; a paused stop reads the same row live; gdb's
# frame/up/down say what names a site instead (issue 14).
load models/stories260K.bin --tokenizer models/tok512.bin
record
record L*.resid_post logits
record L9.q
break L3.resid_post if pos == 6
run "Once upon a time" -n 4
print L3.resid_post[0, 0:4]
print rec::L3.resid_post[6, 0:4]
frame 1
up
f
continue
info record
print rec::L3.resid_post[2:5, 0:3]
print rec::L0.resid_post[-1, 0:3] --save rec.npy
print rec::logits[4] --top 3
print rec::logits[2] --top 3
print rec::logits
print rec::L3.q[0]
print rec::L3.resid_post[9]
set output json
info record
print rec::L1.resid_post[3, 0:2]
set output text
delete
run "Once upon a time" -n 1
print rec::L3.resid_post[6]
record off
info record
