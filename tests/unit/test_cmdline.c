/*
 * test_cmdline.c - the admin protocol without sockets: splitting a line
 * into words, finding its command in a table (usage and unknown-command
 * errors), and framing answers so that none holds an empty line.
 */
#include <stdlib.h>
#include <string.h>

#include "cmdline.h"
#include "t.h"

static int
fn_a(int argc, char **argv, struct sbuf *out)
{
	return 0;
}

static int
fn_b(int argc, char **argv, struct sbuf *out)
{
	return 0;
}

static int
fn_c(int argc, char **argv, struct sbuf *out)
{
	return 0;
}

static int
fn_d(int argc, char **argv, struct sbuf *out)
{
	return 0;
}

static const struct cmdline_cmd table[] = {
	{ { "help" }, 1, 0, 0, "help", "", fn_a },
	{ { "show", "servers" }, 2, 0, 1, "show servers [B]", "", fn_c },
	{ { "set", "server" }, 2, 3, 3, "set server B/S state X", "", fn_b },
	{ { "set", "server" }, 2, 3, 3, "set server B/S weight N", "", fn_b },
	{ { "show", "stat", "json" }, 3, 0, 0, "show stat json", "", fn_d },
};
static const size_t ntable = sizeof(table) / sizeof(table[0]);

/* Split a copy of s; the error text (if any) left in err. */
static int
split(const char *s, char **argv, char *copy, struct sbuf *err)
{
	size_t n = strlen(s);

	memcpy(copy, s, n + 1);
	sbuf_reset(err);
	return cmdline_split(copy, n, argv, CMDLINE_ARGS_MAX, err);
}

static int
frames_to(const char *ans, const char *want)
{
	struct sbuf	a, out;
	int		same;

	sbuf_init(&a);
	sbuf_init(&out);
	sbuf_puts(&a, ans);
	cmdline_frame(&a, &out);
	same = out.len == strlen(want) && memcmp(out.data, want, out.len) == 0;
	if (!same)
		printf("# framed: '%s'\n", out.data);
	sbuf_free(&a);
	sbuf_free(&out);
	return same;
}

static const struct cmdline_cmd *
find(const char *line, struct sbuf *err)
{
	char	 copy[256], *argv[CMDLINE_ARGS_MAX + 1];
	int	 argc = split(line, argv, copy, err);

	return argc == -1 ? NULL : cmdline_find(table, ntable, argc, argv, err);
}

int
main(void)
{
	char			 copy[4096], *argv[CMDLINE_ARGS_MAX + 1];
	char			 many[256] = "";
	struct sbuf		 err;
	const struct cmdline_cmd *c;

	sbuf_init(&err);

	/* Splitting. */
	is_int(split("show info", argv, copy, &err), 2, "two words");
	ok(strcmp(argv[0], "show") == 0 && strcmp(argv[1], "info") == 0 &&
	    argv[2] == NULL, "the words, NULL-terminated");
	is_int(split(" \tset  server\tapp/s1  weight 3 ", argv, copy, &err), 5,
	    "spaces and tabs separate, runs of them count once");
	ok(strcmp(argv[4], "3") == 0, "last word without trailing blanks");
	is_int(split("", argv, copy, &err), -1, "an empty line is refused");
	ok(strcmp(err.data, "error: empty command (try help)\n") == 0,
	    "... with its message");
	is_int(split(" \t ", argv, copy, &err), -1, "blanks only: refused");
	is_int(split("show\001info", argv, copy, &err), -1,
	    "a control character is refused");
	ok(strcmp(err.data, "error: unknown command 'show\\x01info' (control "
	    "characters; try help)\n") == 0, "... echoed as \\xNN: %s",
	    err.data);
	is_int(split("a\x7f", argv, copy, &err), -1, "DEL is refused too");
	for (int i = 0; i < CMDLINE_ARGS_MAX; i++)
		strcat(many, "w ");
	is_int(split(many, argv, copy, &err), CMDLINE_ARGS_MAX,
	    "exactly the maximum of words");
	strcat(many, "w");
	is_int(split(many, argv, copy, &err), -1, "one word more: refused");
	ok(strcmp(err.data, "error: too many words (at most 16)\n") == 0,
	    "... with the limit named");

	/* Echo: printable as is, the rest escaped, long input cut. */
	sbuf_reset(&err);
	cmdline_echo(&err, "a\\b\xff", 4);
	ok(strcmp(err.data, "a\\x5cb\\xff") == 0, "backslash and 0xff "
	    "escaped: %s", err.data);
	sbuf_reset(&err);
	memset(copy, 'x', 100);
	cmdline_echo(&err, copy, 100);
	is_int(err.len, CMDLINE_ECHO_MAX + 3, "40 bytes echoed, then ...");

	/* Dispatch (forms of one command share its function). */
	c = find("help", &err);
	ok(c == &table[0], "help found");
	c = find("show servers", &err);
	ok(c == &table[1], "optional argument absent");
	c = find("show servers app", &err);
	ok(c == &table[1], "optional argument present");
	c = find("show stat json", &err);
	ok(c == &table[4], "three leading words");
	c = find("set server app/s1 weight 2", &err);
	ok(c == &table[2], "the first form that fits takes it");
	c = find("set server app/s1", &err);
	ok(c == NULL, "too few arguments: no command");
	ok(strcmp(err.data, "error: usage: set server B/S state X, or set "
	    "server B/S weight N\n") == 0, "... every form listed: %s",
	    err.data);
	c = find("help me", &err);
	ok(c == NULL && strcmp(err.data, "error: usage: help\n") == 0,
	    "too many arguments: usage");
	c = find("frobnicate the thing now", &err);
	ok(c == NULL && strcmp(err.data, "error: unknown command "
	    "'frobnicate the thing' (try help)\n") == 0,
	    "unknown: the first three words echoed: %s", err.data);
	c = find("show", &err);
	ok(c == NULL && strncmp(err.data, "error: unknown command 'show'",
	    29) == 0, "a prefix alone is unknown");

	/* Framing. */
	ok(frames_to("", "ok\n\n"), "empty answer reads ok");
	ok(frames_to("a\n", "a\n\n"), "one line, then the empty line");
	ok(frames_to("a", "a\n\n"), "a missing LF is added");
	ok(frames_to("a\n\nb\n", "a\nb\n\n"), "an empty line inside is dropped");
	ok(frames_to("\n\n", "ok\n\n"), "only empty lines: ok");
	ok(frames_to("x\ny", "x\ny\n\n"), "last line without LF");

	sbuf_free(&err);
	return done_testing();
}
