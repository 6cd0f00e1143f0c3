# Bad input never crashes and never changes what is loaded or paused.
# expect-exit: 1
foo
st
print L0.q
continue
step
finish
kill
bt
checkpoint
info breakpoints
load models/stories260K.bin --tokenizer models/tok512.bin
break
break L3.resid_pots
break L9.q
break L*.resid_pots
break L2.q extra words
break L2.q if
break L2.q if norm >
break token x
ignore 7 2
condition 9 norm > 1
delete 4
enable x
restore 1
print L0.q
steer L2.resid_post add npy/ramp64.npy
start "Once upon a time" -n 40
until 9
advance L1.q
print L0.q [
print L0.q [0, 0:8
print L0.q [0 0]
print L0.q [0, 1:2:3]
print L0.q [0, 0, 0]
print L0.q [3]
print L0.q [0, 60:80]
print L0.q [0, 5:5]
print L0.q [-2]
print L0.q [x]
print L0.q --top 3
print logits --top 0
print L3.q
print $9
print $
steer L0.q add npy/ramp32.npy
steer L0.q add npy/matrix.npy
steer L0.q add npy/bad-magic.npy
steer L0.q add npy/bad-version.npy
steer L0.q add npy/bad-header.npy
steer L0.q add npy/bad-key.npy
steer L0.q add npy/int32.npy
steer L0.q add npy/big-endian.npy
steer L0.q add npy/fortran.npy
steer L0.q add npy/truncated.npy
steer L0.q add npy/trailing.npy
steer L0.q add npy/empty.npy
steer L0.q add npy/missing.npy
steer L0.q add emb("once upon")
steer L0.q add $7
steer L0.q add banana
steer L0.q add npy/ramp64.npy * x
steer L0.q frobnicate
steer L0.q zero 64
steer L*.q add npy/ramp64.npy
restore 5
delete checkpoint 5
load models/stories260K.gguf
unload
session nope
session new main
set output yaml
set precision 0
set foo 1
info foo
help foo
continue 0
step -1
until x
run -n
run -t hot
run --bogus
source tests/shell/no-such-file.cmd
echo still here, paused where we were:\n
bt
continue
info text
