/* progress.c - the in-place progress line on stderr (see progress.h). */
#include <stdio.h>
#include <time.h>

#include "djinn/progress.h"

static bool enabled;
static double last_ms;
static bool open_line;

void djn_progress_enable(bool on)
{
	enabled = on;
}

bool djn_progress_enabled(void)
{
	return enabled;
}

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

void djn_progress(const char *what, size_t done, size_t total)
{
	double t;

	if (!enabled || total < ((size_t)256 << 20))
		return;
	t = now_ms();
	if (done < total && open_line && t - last_ms < 100)
		return;
	last_ms = t;
	open_line = done < total;
	fprintf(stderr, "\r%s: %.1f/%.1f GB %3d%%%s", what, (double)done / 1e9, (double)total / 1e9,
		(int)(100.0 * (double)done / (double)total), open_line ? "" : "\n");
	fflush(stderr);
}
