/*
 * cmdline.c - the admin protocol's pure parts (see cmdline.h).
 */
#include <string.h>

#include "cmdline.h"

void
cmdline_echo(struct sbuf *out, const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n && i < CMDLINE_ECHO_MAX; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (ch >= 0x20 && ch < 0x7f && ch != '\\')
			sbuf_put(out, &s[i], 1);
		else
			sbuf_printf(out, "\\x%02x", ch);
	}
	if (n > CMDLINE_ECHO_MAX)
		sbuf_puts(out, "...");
}

int
cmdline_split(char *line, size_t len, char **argv, int max, struct sbuf *err)
{
	char	*p, *save = NULL;
	int	 argc = 0;

	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)line[i];

		if ((ch < 0x20 && ch != '\t') || ch == 0x7f) {
			sbuf_puts(err, "error: unknown command '");
			cmdline_echo(err, line, len);
			sbuf_puts(err, "' (control characters; try help)\n");
			return -1;
		}
	}
	line[len] = '\0';
	for (p = strtok_r(line, " \t", &save); p != NULL;
	    p = strtok_r(NULL, " \t", &save)) {
		if (argc == max) {
			sbuf_printf(err, "error: too many words (at most %d)\n",
			    max);
			return -1;
		}
		argv[argc++] = p;
	}
	argv[argc] = NULL;
	if (argc == 0) {
		sbuf_puts(err, "error: empty command (try help)\n");
		return -1;
	}
	return argc;
}

const struct cmdline_cmd *
cmdline_find(const struct cmdline_cmd *table, size_t n, int argc,
    char **argv, struct sbuf *err)
{
	const struct cmdline_cmd *usage = NULL;

	for (size_t i = 0; i < n; i++) {
		const struct cmdline_cmd *c = &table[i];
		int k;

		for (k = 0; k < c->nwords && k < argc; k++)
			if (strcmp(c->words[k], argv[k]) != 0)
				break;
		if (k < c->nwords)
			continue;
		if (argc - k >= c->minargs && argc - k <= c->maxargs)
			return c;
		if (usage == NULL)
			usage = c;
	}
	if (usage != NULL) {
		sbuf_puts(err, "error: usage:");
		for (size_t i = 0; i < n; i++)
			if (table[i].fn == usage->fn)
				sbuf_printf(err, " %s%s", table[i].usage,
				    i + 1 < n && table[i + 1].fn == usage->fn ?
				    ", or" : "");
		sbuf_puts(err, "\n");
		return NULL;
	}
	sbuf_puts(err, "error: unknown command '");
	for (int i = 0; i < argc && i < 3; i++) {
		if (i > 0)
			sbuf_puts(err, " ");
		cmdline_echo(err, argv[i], strlen(argv[i]));
	}
	sbuf_puts(err, "' (try help)\n");
	return NULL;
}

void
cmdline_frame(const struct sbuf *ans, struct sbuf *out)
{
	bool	wrote = false;
	char	last = '\n';

	/* The answer ends at the first empty line: never put one inside. */
	for (size_t i = 0, j; i < ans->len; i = j) {
		const char *lf = memchr(ans->data + i, '\n', ans->len - i);

		j = lf != NULL ? (size_t)(lf - ans->data) + 1 : ans->len;
		if (j - i == 1 && ans->data[i] == '\n')
			continue;
		sbuf_put(out, ans->data + i, j - i);
		last = ans->data[j - 1];
		wrote = true;
	}
	if (!wrote)
		sbuf_puts(out, "ok");
	if (!wrote || last != '\n')
		sbuf_puts(out, "\n");
	sbuf_puts(out, "\n");
}
