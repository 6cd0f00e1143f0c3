# Token accuracy: a 256-token greedy run gives the same text when it stops at
# every layer's resid_post (1280 stops, each running `continue` from the
# breakpoint's commands), and when stepped site by site or layer by layer.
# (run.sh also compares these texts with each other and with llama2.c's.)
load models/stories260K.bin --tokenizer models/tok512.bin
break L0.resid_post
break L1.resid_post
break L2.resid_post
break L3.resid_post
break L4.resid_post
commands 1-5
silent
continue
end
run "Once upon a time" -n 256
info text
info breakpoints
delete
start "Once upon a time" -n 256
step 1000000
info text
start "Once upon a time" -n 256
next 1000000
info text
