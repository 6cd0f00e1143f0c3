# Every generated token reaches the text stream, however the run moves on:
# leaving a logits stop with step, finish or next samples the next token,
# and it prints then (issue 14: " there" was lost).  `info text` is the
# reference the streamed pieces must add up to.
load models/stories260K.bin --tokenizer models/tok512.bin
break logits if pos == 5
run "Once upon a time" -n 8
step
continue
info text
run "Once upon a time" -n 8
finish
continue
run "Once upon a time" -n 8
next 3
until 9
continue
delete
start "Once upon a time" -n 3
step 1000
info text
