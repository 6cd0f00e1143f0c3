# The logit lens: final_norm and the unembedding applied to a residual site.
# At the last layer's resid_post the last row is the model's own logits (the
# same table as print logits --top); earlier layers predict other tokens.
# Errors: no run, a site not live, not a residual site, bad K and rows.
# expect-exit: 1
load models/stories260K.bin --tokenizer models/tok512.bin
lens L4.resid_post
break logits
run "Once upon a time" -n 3
lens L4.resid_post[-1] --top 3
print logits --top 3
lens L0.resid_mid [1:3] --top 2
lens embed[4] --top 2
print $4[0] --top 4
delete
start "Once upon a time" -n 3
step 3
lens
lens L0.resid_post
lens L0.q
lens final_norm
lens logits
lens L0.resid_pots
lens embed --top 0
lens embed --top abc
lens embed --top
lens embed --bottom 3
lens embed[9]
lens embed[:, 0:3]
lens embed [0] [1]
finish
lens --top 1
continue
lens L2.resid_post --top 2
set output json
lens L4.resid_post --top 2
set output text
