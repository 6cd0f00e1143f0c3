# The header of a print names the positions of the rows it shows, and bt
# during the prompt says it is being read (issue 14, bug 7).
load models/stories260K.bin --tokenizer models/tok512.bin
break L3.resid_post
start "Once upon a time" -n 3
bt
continue
print L3.resid_post[4, 0:2]
print L3.resid_post[1:3, 0:2]
print L3.resid_post[-2:, 0:2]
print L3.resid_post[:, 0:1]
bt
continue
print L3.resid_post[0, 0:2]
bt
