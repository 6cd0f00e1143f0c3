# Conditional breakpoints stop where the condition first holds (a hit count of
# 1 at the stop says no earlier crossing held); ignore counts, continue N,
# tbreak and token breakpoints behave as gdb's.
load models/stories260K.bin --tokenizer models/tok512.bin
watch L*.resid_post norm > 14
run "Once upon a time" -n 40
info breakpoints
print L3.resid_post [0, 0:2]
delete 1
break L*.resid_post if pos == 12 and layer == 3
continue
info breakpoints
delete
break logits if argmax == 298
start
continue
print logits --top 2
info breakpoints
delete
break L1.resid_post
ignore 4 3
start
continue
info breakpoints
continue 3
info breakpoints
tbreak L0.q
info breakpoints
continue
info breakpoints
continue
disable 4
break token 20
continue
bt
delete 6
enable 4
condition 4 pos == 25
continue
condition 4
continue
info breakpoints
disable
continue
info breakpoints
