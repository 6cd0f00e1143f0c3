# The everyday path: load, run, break, look around, finish.
# filter: s/cpu ([0-9]* threads)/cpu (N threads)/
load models/stories260K.bin --tokenizer models/tok512.bin
info model
run "Once upon a time" -n 24
info text
break L2.resid_post if pos == 9
info breakpoints
run
bt
where
print L2.resid_post [0, 0:8]
print L2.resid_post[-1, 60:64]
p $1
print
info sites
step
step 3
next
next 2
finish
print logits --top 5
print final_norm [0, :6]
info breakpoints
continue
bt
info text
kill
info sessions
