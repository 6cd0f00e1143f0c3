# display prints at every stop; undisplay stops it.
# expect-exit: 1
load models/stories260K.bin --tokenizer models/tok512.bin
display L0.resid_post [-1, 0:3]
display logits --top 2
info display
break L0.resid_post
run "Once upon a time" -n 3
continue
undisplay 1
continue
info display
undisplay
info display
delete display 7
