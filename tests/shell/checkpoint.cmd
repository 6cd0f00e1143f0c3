# checkpoint, run on, restore, run on: the same continuation token for token,
# for greedy decoding and for seeded sampling, as often as we restore.
load models/stories260K.bin --tokenizer models/tok512.bin
echo -- greedy: a checkpoint between tokens\n
start "Once upon a time" -n 40
until 12
checkpoint
continue
info text
restore 1
bt
continue
info text
restore 1
continue
info text
echo \n-- seeded sampling: a checkpoint in the middle of a layer\n
start "Once upon a time" -n 40 -t 1.0 --seed 42
until 10
advance L2.attn
checkpoint
continue
restore 2
continue
restore 2
continue
restore 2
print L2.attn [0, 0:4]
continue
info checkpoints
echo \n-- a restored run differs from a fresh one with another seed\n
run -t 1.0 --seed 43 -n 40
restore 1
continue
delete checkpoint 1
info checkpoints
info text
