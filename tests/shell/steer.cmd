# Steering: a zero vector changes nothing; a persistent steer changes every
# later token; a one-shot steer changes the paused tensor once; the four
# operations and the three kinds of vector.
# expect-exit: 1
load models/stories260K.bin --tokenizer models/tok512.bin
run "Once upon a time" -n 48
steer L2.resid_post add npy/zeros64.npy --persist
info steers
run
info steers
steer clear
info steers
echo \n-- adding Lily's embedding at every L3.resid_post changes the story:\n
steer L3.resid_post add emb("Lily")*3 --persist
run
steer clear 2
echo \n-- one-shot, at pos 20 only: the first 20 tokens stay the same\n
break L2.resid_post if pos == 20
run
print L2.resid_post [0, 0:4]
steer L2.resid_post add npy/ramp64.npy * 8
print L2.resid_post [0, 0:4]
delete
continue
echo \n-- the operations\n
start "Once upon a time" -n 8
advance L1.mlp_act
print L1.mlp_act [-1, 0:4]
steer L1.mlp_act zero 0 2
print L1.mlp_act [-1, 0:4]
steer L1.mlp_act scale -2
print L1.mlp_act [-1, 0:4]
steer L1.mlp_act zero
print L1.mlp_act [-1, 0:4]
advance L1.resid_post
print L0.resid_post [-1]
steer L1.resid_post set $
print L1.resid_post [-1, 0:4]
steer L1.resid_post add npy/ramp64-row.npy
print L1.resid_post [-1, 0:4]
steer L1.resid_post add npy/ramp64-f8-v2.npy * -1
print L1.resid_post [-1, 0:4]
steer L*.mlp_out scale 1 --persist
steer L2-3.attn_norm zero 5 --persist
info steers
continue
info steers
steer clear 7
steer clear
info steers
