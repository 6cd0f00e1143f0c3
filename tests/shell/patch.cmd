# Activation patching: patch CLEAN CORRUPT --tokens A B.  The clean prompt
# into itself is 0 everywhere (nothing to normalise by, said so); with " in"
# for " upon" at pos 2, positions 0 and 1 are 0 at every layer and the last
# layer's last position is 1 (the whole residual there is the clean one); the
# table is $N (layers x positions), --site takes any per-layer kind, --save a
# CSV.  Errors: lengths, a token out of the vocabulary or of two tokens, a
# site that is not per-layer, usage.
# expect-exit: 1
load models/stories260K.bin --tokenizer models/tok512.bin
patch "Once upon a time" "Once upon a time" --tokens 432 383
patch "Once upon a time" "Once in a time" --tokens , there --save patch.csv
print $2 [-1]
patch "Once upon a time" "Once in a time" --tokens 432 383 --site L*.mlp_out
patch "Once upon a time" "Once upon" --tokens 432 383
patch "Once upon a time" "Once in a time" --tokens 432 512
patch "Once upon a time" "Once in a time" --tokens 432 "the re"
patch "Once upon a time" "Once in a time" --tokens 432 383 --site logits
patch "Once upon a time" "Once in a time" --tokens 432
patch "Once upon a time"
