# Arithmetic on the value history (issue 14): a value, an operator, a value,
# or cos / dot / norm of values; the result is the next $N.  Shapes must
# match; anything else is refused with a reason.
# expect-exit: 1
load models/stories260K.bin --tokenizer models/tok512.bin
break L3.resid_post
run "Once upon a time" -n 2
print L3.resid_post[-1, 0:4]
print L3.mlp_out[-1, 0:4]
print $1 - $2
print $1 + $2
print $1 * 0.5
print 2 * $2
print $1 / 4
print $1 * $2
print $1-$2
print cos($1, $2)
print cos($1, $1)
print dot($1, $2)
print norm($1)
print norm($)
print $2 + $3 [0, 1:3]
print L3.resid_post[:, 0:4]
print L3.resid_post[-1, 0:4]
print dot($17, $17)
print norm($16)
echo \n-- refused\n
print $1 - $16
print cos($1, $16)
print $1 + 2
print 2 / $1
print $1 - $2 - $3
print $1 ^ $2
print cos($1)
print norm(3)
print dot($1, $99)
print $1 - $2 L3.resid_post
echo \n-- a logit difference, read as tokens\n
delete
break logits
continue
print logits[-1]
print L4.resid_post[-1, 0:4]
print $20 * 2 --top 3
print $20 - $20 --top 2
print $20 * 2 [0, 0:3]
print $21 --top 2
