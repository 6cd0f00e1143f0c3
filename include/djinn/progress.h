/* progress.h - one line on stderr, rewritten in place, for long work
 * (uploading a 13 GB model, pinning host memory, writing a synthetic one).
 * Off unless the program turns it on: the CLI does when stderr is a terminal
 * and it is neither in batch nor JSON mode, so scripts and CI see nothing. */
#ifndef DJINN_PROGRESS_H
#define DJINN_PROGRESS_H

#include <stdbool.h>
#include <stddef.h>

void djn_progress_enable(bool on);
bool djn_progress_enabled(void);
/* "what: 4.2/13.5 GB 31%", at most ten updates a second; done == total ends
 * the line.  Work under 256 MiB in all is not worth a line and prints
 * nothing. */
void djn_progress(const char *what, size_t done, size_t total);

#endif
