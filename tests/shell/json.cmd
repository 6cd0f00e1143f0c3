# --json: every command answers with one JSON object on one line.
# args: --json
# expect-exit: 1
load models/stories260K.bin --tokenizer models/tok512.bin
break L2.resid_post if pos == 6
run "Once upon a time" -n 10
print L2.resid_post [0, 0:3]
print logits --top 2
bt
info breakpoints
checkpoint
steer L2.resid_post scale 2
nonsense
continue
info text
set output text
echo back to text\n
