# Per-position steering (issue 14): steer ... --pos N | A:B changes only the
# rows at those token positions; the others stay bit for bit as they were.
# expect-exit: 1
load models/stories260K.bin --tokenizer models/tok512.bin
set elements 5
break L3.resid_post
run "Once upon a time" -n 3
echo \n-- one-shot, pos 2:4 (2 and 3) of the prompt's rows (pos 0..4)\n
print L3.resid_post
print L3.mlp_out[0]
steer L3.resid_post add $2 --pos 2:4
print L3.resid_post
print $3 - $1
print norm($)
echo \n-- rows 0, 1 and 4 are unchanged (0 above); rows 2 and 3 gained $2 exactly:\n
print $1[2]
print $6 + $2
print $3[2]
print $8 - $7
print $1[3]
print $10 + $2
print $3[3]
print $12 - $11
echo \n-- persistent, at pos 4 only; the unsteered run first\n
delete
break L4.resid_post
run
print L4.resid_post
steer L3.resid_post add $2 --pos 4 --persist
info steers
run
print L4.resid_post
print $15 - $14
print norm($)
echo \n-- rows 0..3 are the unsteered run's, bit for bit; row 4 differs\n
continue
continue
info steers
steer clear
echo \n-- --pos 5: (5 on): the generated tokens' chunks, not the prompt's\n
steer L3.resid_post add $2 --pos 5: --persist
run
continue
continue
info steers
echo \n-- refused\n
steer L4.resid_post add $2 --pos 2
steer L4.resid_post add $2 --pos 7:
steer L4.resid_post add $2 --pos 5:3
steer L4.resid_post add $2 --pos x
steer L4.resid_post add $2 --pos
steer L4.resid_post add $2 --frob
