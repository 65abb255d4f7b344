/*
 * cmdline.h - the admin protocol's pure parts: split a command line into
 * words, find its command in a table, frame an answer. Bytes in, words or
 * text out; no sockets and no state (tests/unit/test_cmdline.c).
 *
 * An answer is text lines ending with one empty line, so an answer never
 * holds an empty line itself; an empty answer reads "ok".
 */
#ifndef SHOAL_CMDLINE_H
#define SHOAL_CMDLINE_H

#include <stddef.h>

#include "sbuf.h"

#define CMDLINE_ARGS_MAX	16	/* words per command line */
#define CMDLINE_ECHO_MAX	40	/* bytes of a bad word echoed back */

/* A command: its leading words, its argument count, its handler. */
struct cmdline_cmd {
	const char	*words[3];
	int		 nwords;
	int		 minargs, maxargs;	/* words after the leading ones */
	const char	*usage;		/* "set server B/S ..." */
	const char	*help;		/* one line */
	/* Appends its answer to out; 0, or -1 after an "error: ..." line. */
	int		(*fn)(int argc, char **argv, struct sbuf *out);
};

/*
 * Split line (len bytes, no LF; line[len] must be writable: it becomes
 * the NUL) into words separated by spaces and tabs; argv has room for
 * max + 1 pointers into line and ends with NULL. Returns the word count
 * (>= 1), or -1 after appending an "error: ..." line to err: a control
 * character, more than max words, or no word at all.
 */
int	cmdline_split(char *line, size_t len, char **argv, int max,
	    struct sbuf *err);

/*
 * The first command of table[n] whose leading words start argv and whose
 * argument count fits. NULL after appending an "error: ..." line to err:
 * "usage: ..." listing every form of a command whose words matched, or
 * "unknown command '...'" echoing the first three words.
 */
const struct cmdline_cmd *cmdline_find(const struct cmdline_cmd *table,
	    size_t n, int argc, char **argv, struct sbuf *err);

/* Append ans to out as one framed answer (see above). */
void	cmdline_frame(const struct sbuf *ans, struct sbuf *out);

/* Append n bytes of s for an error message: printable ASCII as is, the
 * rest as \xNN, at most CMDLINE_ECHO_MAX bytes then "...". */
void	cmdline_echo(struct sbuf *out, const char *s, size_t n);

#endif /* SHOAL_CMDLINE_H */
