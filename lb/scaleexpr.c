/*
 * scaleexpr.c - parse, evaluate and print scale conditions (grammar in
 * scaleexpr.h).
 *
 * A recursive-descent parser over a one-token look-ahead lexer. Written
 * for hostile text (it is fuzzed): every token is bounded, nesting is
 * bounded by SCALEEXPR_DEPTH_MAX and the node array by
 * SCALEEXPR_NODES_MAX, and the first error ends the parse with the column
 * where it was found.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scaleexpr.h"

enum node_type { SCALE_N_CMP, SCALE_N_AND, SCALE_N_OR, SCALE_N_NOT };
enum cmp_op { CMP_LT, CMP_LE, CMP_GT, CMP_GE, CMP_EQ, CMP_NE };
enum unit { U_NONE, U_US, U_MS, U_S, U_M, U_PCT };

static const char *const cmp_text[] = {
	[CMP_LT] = "<", [CMP_LE] = "<=", [CMP_GT] = ">", [CMP_GE] = ">=",
	[CMP_EQ] = "==", [CMP_NE] = "!=",
};
static const char *const unit_text[] = {
	[U_NONE] = "", [U_US] = "us", [U_MS] = "ms", [U_S] = "s", [U_M] = "m",
	[U_PCT] = "%",
};
static const double unit_ms[] = {	/* to milliseconds (time units) */
	[U_US] = 0.001, [U_MS] = 1, [U_S] = 1000, [U_M] = 60000,
};

static const struct {
	const char		*name;
	enum scaleexpr_kind	 kind;
} signals[SCALE_NSIGNALS] = {
	[SCALE_CONNECT_P50] = { "connect_p50", SCALE_KIND_TIME },
	[SCALE_CONNECT_P95] = { "connect_p95", SCALE_KIND_TIME },
	[SCALE_CONNECT_P99] = { "connect_p99", SCALE_KIND_TIME },
	[SCALE_TTFB_P50] = { "ttfb_p50", SCALE_KIND_TIME },
	[SCALE_TTFB_P95] = { "ttfb_p95", SCALE_KIND_TIME },
	[SCALE_TTFB_P99] = { "ttfb_p99", SCALE_KIND_TIME },
	[SCALE_DURATION_P50] = { "duration_p50", SCALE_KIND_TIME },
	[SCALE_DURATION_P95] = { "duration_p95", SCALE_KIND_TIME },
	[SCALE_DURATION_P99] = { "duration_p99", SCALE_KIND_TIME },
	[SCALE_QUEUE_P50] = { "queue_p50", SCALE_KIND_TIME },
	[SCALE_QUEUE_P95] = { "queue_p95", SCALE_KIND_TIME },
	[SCALE_QUEUE_P99] = { "queue_p99", SCALE_KIND_TIME },
	[SCALE_SESSIONS] = { "sessions", SCALE_KIND_COUNT },
	[SCALE_SESSIONS_PER_SERVER] = { "sessions_per_server",
	    SCALE_KIND_COUNT },
	[SCALE_UP_SERVERS] = { "up_servers", SCALE_KIND_COUNT },
	[SCALE_SERVERS] = { "servers", SCALE_KIND_COUNT },
	[SCALE_QUEUED] = { "queued", SCALE_KIND_COUNT },
	[SCALE_SESSION_RATE] = { "session_rate", SCALE_KIND_COUNT },
	[SCALE_LOAD_AVG] = { "load_avg", SCALE_KIND_PERCENT },
	[SCALE_LOAD_MAX] = { "load_max", SCALE_KIND_PERCENT },
};

#define NUMBER_MAX	1e9	/* largest number written */
#define TOKEN_MAX	SCALEEXPR_NUM_MAX	/* longest name or number */

enum tok_type {
	T_END, T_LP, T_RP, T_CMP, T_NUM, T_IDENT,
};

struct token {
	enum tok_type	 type;
	size_t		 pos;		/* offset in the text */
	size_t		 len;
	int		 cmp;		/* T_CMP: enum cmp_op */
	double		 num;		/* T_NUM: its value */
	char		 numtext[TOKEN_MAX + 1];	/* T_NUM: its digits */
	int		 unit;		/* T_NUM: enum unit */
};

struct parser {
	const char		*s;
	size_t			 pos;		/* lexer position */
	struct token		 tok;		/* look-ahead */
	struct scaleexpr	*e;
	char			*err;
	size_t			 errsz;
	int			 depth;
	bool			 failed;
};

__attribute__((format(printf, 3, 4)))
static int
fail_at(struct parser *p, size_t pos, const char *fmt, ...)
{
	va_list	 ap;
	int	 n;

	if (p->failed)
		return -1;
	p->failed = true;
	if (p->errsz == 0)
		return -1;
	n = snprintf(p->err, p->errsz, "column %zu: ", pos + 1);
	if (n >= 0 && (size_t)n < p->errsz) {
		va_start(ap, fmt);
		vsnprintf(p->err + n, p->errsz - (size_t)n, fmt, ap);
		va_end(ap);
	}
	return -1;
}

static bool
is_blank(char c)
{
	return c == ' ' || c == '\t';
}

static bool
is_lower(char c)
{
	return c >= 'a' && c <= 'z';
}

static bool
is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* A number: digits [. digits], then a unit made of letters or "%". */
static int
lex_number(struct parser *p, struct token *t)
{
	const char	*s = p->s;
	size_t		 i = p->pos, u;
	char		*num = t->numtext;
	static const char *const units[] = { "us", "ms", "s", "m", "%" };
	static const int unit_of[] = { U_US, U_MS, U_S, U_M, U_PCT };
	size_t		 k;

	while (is_digit(s[i]))
		i++;
	if (s[i] == '.') {
		if (!is_digit(s[i + 1]))
			return fail_at(p, i, "a digit must follow '.'");
		i++;
		while (is_digit(s[i]))
			i++;
	}
	if (i - p->pos > TOKEN_MAX)
		return fail_at(p, p->pos, "number longer than %d characters",
		    TOKEN_MAX);
	memcpy(num, s + p->pos, i - p->pos);
	num[i - p->pos] = '\0';
	t->num = strtod(num, NULL);
	if (!(t->num <= NUMBER_MAX))
		return fail_at(p, p->pos, "number above %.0f", NUMBER_MAX);
	t->unit = U_NONE;
	u = i;
	if (s[i] == '%')
		i++;
	else
		while ((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' &&
		    s[i] <= 'Z') || is_digit(s[i]) || s[i] == '_')
			i++;
	if (i > u) {
		for (k = 0; k < sizeof(units) / sizeof(units[0]); k++)
			if (strlen(units[k]) == i - u &&
			    memcmp(units[k], s + u, i - u) == 0)
				break;
		if (k == sizeof(units) / sizeof(units[0]))
			return fail_at(p, u, "unknown unit '%.*s' (us, ms, s, "
			    "m, %%)", (int)(i - u > TOKEN_MAX ? TOKEN_MAX :
			    i - u), s + u);
		t->unit = unit_of[k];
	}
	t->type = T_NUM;
	t->len = i - p->pos;
	p->pos = i;
	return 0;
}

/* Read the next token into p->tok. */
static int
lex(struct parser *p)
{
	const char	*s = p->s;
	struct token	*t = &p->tok;
	char		 c;

	while (is_blank(s[p->pos]))
		p->pos++;
	memset(t, 0, sizeof(*t));
	t->pos = p->pos;
	c = s[p->pos];
	if (c == '\0') {
		t->type = T_END;
		return 0;
	}
	if (c == '(' || c == ')') {
		t->type = c == '(' ? T_LP : T_RP;
		t->len = 1;
		p->pos++;
		return 0;
	}
	if (c == '<' || c == '>' || c == '=' || c == '!') {
		t->type = T_CMP;
		t->len = s[p->pos + 1] == '=' ? 2 : 1;
		if (c == '<')
			t->cmp = t->len == 2 ? CMP_LE : CMP_LT;
		else if (c == '>')
			t->cmp = t->len == 2 ? CMP_GE : CMP_GT;
		else if (t->len == 1)
			return fail_at(p, p->pos, "'%c' is not an operator "
			    "(<, <=, >, >=, ==, !=)", c);
		else
			t->cmp = c == '=' ? CMP_EQ : CMP_NE;
		p->pos += t->len;
		return 0;
	}
	if (is_digit(c))
		return lex_number(p, t);
	if (is_lower(c) || c == '_') {
		while (is_lower(s[p->pos]) || is_digit(s[p->pos]) ||
		    s[p->pos] == '_')
			p->pos++;
		t->type = T_IDENT;
		t->len = p->pos - t->pos;
		if (t->len > TOKEN_MAX)
			return fail_at(p, t->pos, "name longer than %d "
			    "characters", TOKEN_MAX);
		return 0;
	}
	if (c >= 'A' && c <= 'Z')
		return fail_at(p, p->pos, "names and keywords are lower case");
	if ((unsigned char)c > 0x20 && (unsigned char)c < 0x7f)
		return fail_at(p, p->pos, "unexpected '%c'", c);
	return fail_at(p, p->pos, "unexpected byte 0x%02x",
	    (unsigned char)c);
}

static bool
tok_is(const struct parser *p, const char *word)
{
	return p->tok.type == T_IDENT && strlen(word) == p->tok.len &&
	    memcmp(p->s + p->tok.pos, word, p->tok.len) == 0;
}

static const char *
tok_desc(const struct parser *p)
{
	switch (p->tok.type) {
	case T_END:
		return "the end";
	case T_LP:
		return "'('";
	case T_RP:
		return "')'";
	case T_CMP:
		return "an operator";
	case T_NUM:
		return "a number";
	case T_IDENT:
		break;
	}
	if (tok_is(p, "and"))
		return "'and'";
	if (tok_is(p, "or"))
		return "'or'";
	if (tok_is(p, "for"))
		return "'for'";
	if (tok_is(p, "not"))
		return "'not'";
	return "a name";
}

static int
node_new(struct parser *p, int type)
{
	struct scaleexpr_node	*n;

	if (p->e->nnodes >= SCALEEXPR_NODES_MAX)
		return fail_at(p, p->tok.pos, "expression too long (more than "
		    "%d terms and operators)", SCALEEXPR_NODES_MAX);
	n = &p->e->node[p->e->nnodes];
	memset(n, 0, sizeof(*n));
	n->type = (uint8_t)type;
	n->a = n->b = -1;
	return p->e->nnodes++;
}

static int	parse_cond(struct parser *);

/* SIGNAL OP VALUE */
static int
parse_cmp(struct parser *p)
{
	struct scaleexpr_node	*n;
	char			 name[TOKEN_MAX + 1];
	size_t			 namepos;
	int			 sig, idx, kind;
	double			 v;

	if (p->tok.type != T_IDENT || tok_is(p, "and") || tok_is(p, "or") ||
	    tok_is(p, "for"))
		return fail_at(p, p->tok.pos, "expected a signal name, "
		    "'not' or '(', found %s", tok_desc(p));
	memcpy(name, p->s + p->tok.pos, p->tok.len);
	name[p->tok.len] = '\0';
	namepos = p->tok.pos;
	if ((sig = scaleexpr_signal_find(name)) == -1) {
		if (strncmp(name, "connect_", 8) == 0 ||
		    strncmp(name, "ttfb_", 5) == 0 ||
		    strncmp(name, "duration_", 9) == 0 ||
		    strncmp(name, "queue_", 6) == 0)
			return fail_at(p, namepos, "unknown signal '%s' "
			    "(percentiles are p50, p95, p99)", name);
		return fail_at(p, namepos, "unknown signal '%s'", name);
	}
	if (lex(p) == -1)
		return -1;
	if (p->tok.type != T_CMP)
		return fail_at(p, p->tok.pos, "expected an operator (<, <=, >, "
		    ">=, ==, !=) after '%s', found %s", name, tok_desc(p));
	if ((idx = node_new(p, SCALE_N_CMP)) == -1)
		return -1;
	n = &p->e->node[idx];
	n->signal = (uint8_t)sig;
	n->cmp = (uint8_t)p->tok.cmp;
	if (lex(p) == -1)
		return -1;
	if (p->tok.type != T_NUM)
		return fail_at(p, p->tok.pos, "expected a number after the "
		    "operator, found %s", tok_desc(p));
	kind = scaleexpr_signal_kind(sig);
	v = p->tok.num;
	switch (p->tok.unit) {
	case U_NONE:
		if (kind == SCALE_KIND_TIME)
			return fail_at(p, p->tok.pos, "'%s' is a time: the "
			    "value needs a unit (us, ms, s, m)", name);
		break;
	case U_PCT:
		if (kind != SCALE_KIND_PERCENT)
			return fail_at(p, p->tok.pos, "'%s' is not a "
			    "percentage: no %%", name);
		break;
	default:
		if (kind != SCALE_KIND_TIME)
			return fail_at(p, p->tok.pos, "'%s' is %s: no time "
			    "unit", name, kind == SCALE_KIND_PERCENT ?
			    "a percentage" : "a count");
		v *= unit_ms[p->tok.unit];
		break;
	}
	if (kind == SCALE_KIND_PERCENT && v > 100)
		return fail_at(p, p->tok.pos, "a percentage is at most 100");
	n->unit = (uint8_t)p->tok.unit;
	n->value = v;
	memcpy(n->num, p->tok.numtext, sizeof(n->num));
	p->e->used |= 1u << sig;
	if (lex(p) == -1)
		return -1;
	return idx;
}

/* "not" unary | "(" cond ")" | cmp */
static int
parse_unary(struct parser *p)
{
	size_t	 open;
	int	 idx, sub;

	if (++p->depth > SCALEEXPR_DEPTH_MAX)
		return fail_at(p, p->tok.pos, "nested deeper than %d",
		    SCALEEXPR_DEPTH_MAX);
	if (tok_is(p, "not")) {
		if (lex(p) == -1 || (sub = parse_unary(p)) == -1 ||
		    (idx = node_new(p, SCALE_N_NOT)) == -1)
			return -1;
		p->e->node[idx].a = (int16_t)sub;
	} else if (p->tok.type == T_LP) {
		open = p->tok.pos;
		if (lex(p) == -1 || (idx = parse_cond(p)) == -1)
			return -1;
		if (p->tok.type != T_RP)
			return fail_at(p, p->tok.pos, "expected ')' to close "
			    "the '(' of column %zu, found %s", open + 1,
			    tok_desc(p));
		if (lex(p) == -1)
			return -1;
	} else if ((idx = parse_cmp(p)) == -1)
		return -1;
	p->depth--;
	return idx;
}

/* One level of a left-folded chain: conj ("or" conj)* or unary ("and" unary)*. */
static int
parse_chain(struct parser *p, const char *word, int type,
    int (*sub)(struct parser *))
{
	int	 left, right, idx;

	if ((left = sub(p)) == -1)
		return -1;
	while (tok_is(p, word)) {
		if (lex(p) == -1 || (right = sub(p)) == -1 ||
		    (idx = node_new(p, type)) == -1)
			return -1;
		p->e->node[idx].a = (int16_t)left;
		p->e->node[idx].b = (int16_t)right;
		left = idx;
	}
	return left;
}

static int
parse_conj(struct parser *p)
{
	return parse_chain(p, "and", SCALE_N_AND, parse_unary);
}

static int
parse_cond(struct parser *p)
{
	return parse_chain(p, "or", SCALE_N_OR, parse_conj);
}

/* "for" DURATION, the token after "for" being current. */
static int
parse_for(struct parser *p)
{
	double	 ms;

	if (p->tok.type != T_NUM)
		return fail_at(p, p->tok.pos, "expected a duration after "
		    "'for' (30s, 500ms, 2m), found %s", tok_desc(p));
	if (p->tok.unit != U_MS && p->tok.unit != U_S && p->tok.unit != U_M)
		return fail_at(p, p->tok.pos, "a 'for' duration needs a unit: "
		    "ms, s or m");
	ms = p->tok.num * unit_ms[p->tok.unit];
	if (ms > SCALEEXPR_FOR_MAX_MS)
		return fail_at(p, p->tok.pos, "'for' is at most 1 hour (60m)");
	p->e->for_ms = (uint64_t)llround(ms);
	return lex(p);
}

int
scaleexpr_parse(struct scaleexpr *e, const char *text, char *err,
    size_t errsz)
{
	struct parser	 p;
	size_t		 len;

	memset(e, 0, sizeof(*e));
	memset(&p, 0, sizeof(p));
	p.s = text;
	p.e = e;
	p.err = err;
	p.errsz = errsz;
	if (errsz > 0)
		err[0] = '\0';
	len = strnlen(text, SCALEEXPR_TEXT_MAX + 1);
	if (len > SCALEEXPR_TEXT_MAX)
		return fail_at(&p, SCALEEXPR_TEXT_MAX, "expression longer "
		    "than %d bytes", SCALEEXPR_TEXT_MAX);
	if (lex(&p) == -1)
		return -1;
	if (p.tok.type == T_END)
		return fail_at(&p, p.tok.pos, "empty expression");
	if ((e->root = parse_cond(&p)) == -1)
		return -1;
	if (!tok_is(&p, "for")) {
		if (p.tok.type != T_END)
			return fail_at(&p, p.tok.pos, "expected 'and', 'or', "
			    "'for' or the end, found %s", tok_desc(&p));
		return 0;
	}
	if (lex(&p) == -1 || parse_for(&p) == -1)
		return -1;
	if (p.tok.type != T_END)
		return fail_at(&p, p.tok.pos, "expected the end after the "
		    "'for' duration, found %s", tok_desc(&p));
	return 0;
}

static bool
eval_node(const struct scaleexpr *e, int i, const double *v)
{
	const struct scaleexpr_node	*n = &e->node[i];
	double				 x;

	switch (n->type) {
	case SCALE_N_AND:
		return eval_node(e, n->a, v) && eval_node(e, n->b, v);
	case SCALE_N_OR:
		return eval_node(e, n->a, v) || eval_node(e, n->b, v);
	case SCALE_N_NOT:
		return !eval_node(e, n->a, v);
	}
	x = v[n->signal];
	if (isnan(x))
		return false;
	switch (n->cmp) {
	case CMP_LT:
		return x < n->value;
	case CMP_LE:
		return x <= n->value;
	case CMP_GT:
		return x > n->value;
	case CMP_GE:
		return x >= n->value;
	case CMP_EQ:
		return x == n->value;
	}
	return x != n->value;
}

bool
scaleexpr_eval(const struct scaleexpr *e, const double *values)
{
	if (e->nnodes == 0)
		return false;
	return eval_node(e, e->root, values);
}

/* An appending snprintf that counts what it would have needed. */
struct out {
	char	*buf;
	size_t	 sz;
	size_t	 len;
};

__attribute__((format(printf, 2, 3)))
static void
out_printf(struct out *o, const char *fmt, ...)
{
	va_list	 ap;
	int	 n;

	va_start(ap, fmt);
	n = vsnprintf(o->len < o->sz ? o->buf + o->len : NULL,
	    o->len < o->sz ? o->sz - o->len : 0, fmt, ap);
	va_end(ap);
	if (n > 0)
		o->len += (size_t)n;
}

static int
prec(const struct scaleexpr_node *n)
{
	switch (n->type) {
	case SCALE_N_OR:
		return 1;
	case SCALE_N_AND:
		return 2;
	case SCALE_N_NOT:
		return 3;
	}
	return 4;
}

static void
format_node(const struct scaleexpr *e, int i, int min, struct out *o)
{
	const struct scaleexpr_node	*n = &e->node[i];
	bool				 paren = prec(n) < min;

	if (paren)
		out_printf(o, "(");
	switch (n->type) {
	case SCALE_N_OR:
	case SCALE_N_AND:
		/* Left-folded: the left child may be the same operator. */
		format_node(e, n->a, prec(n), o);
		out_printf(o, n->type == SCALE_N_OR ? " or " : " and ");
		format_node(e, n->b, prec(n) + 1, o);
		break;
	case SCALE_N_NOT:
		/* No parentheses beyond those needed: the canonical text
		 * must not nest deeper than the text it came from. */
		out_printf(o, "not ");
		format_node(e, n->a, 3, o);
		break;
	default:
		out_printf(o, "%s %s %s%s", scaleexpr_signal_name(n->signal),
		    cmp_text[n->cmp], n->num, unit_text[n->unit]);
		break;
	}
	if (paren)
		out_printf(o, ")");
}

int
scaleexpr_format(const struct scaleexpr *e, char *buf, size_t bufsz)
{
	struct out	 o = { buf, bufsz, 0 };

	if (bufsz > 0)
		buf[0] = '\0';
	if (e->nnodes == 0)
		return 0;
	format_node(e, e->root, 0, &o);
	if (e->for_ms == 0)
		;
	else if (e->for_ms % 60000 == 0)
		out_printf(&o, " for %llum",
		    (unsigned long long)(e->for_ms / 60000));
	else if (e->for_ms % 1000 == 0)
		out_printf(&o, " for %llus",
		    (unsigned long long)(e->for_ms / 1000));
	else
		out_printf(&o, " for %llums", (unsigned long long)e->for_ms);
	return (int)o.len;
}

const char *
scaleexpr_signal_name(int s)
{
	if (s < 0 || s >= SCALE_NSIGNALS)
		return "?";
	return signals[s].name;
}

int
scaleexpr_signal_find(const char *name)
{
	int	 i;

	for (i = 0; i < SCALE_NSIGNALS; i++)
		if (strcmp(signals[i].name, name) == 0)
			return i;
	return -1;
}

enum scaleexpr_kind
scaleexpr_signal_kind(int s)
{
	if (s < 0 || s >= SCALE_NSIGNALS)
		return SCALE_KIND_COUNT;
	return signals[s].kind;
}

void
scaleexpr_for_reset(struct scaleexpr_for *f)
{
	f->holding = false;
	f->since_ms = 0;
}

bool
scaleexpr_for_update(struct scaleexpr_for *f, bool cond, uint64_t now_ms,
    uint64_t for_ms)
{
	if (!cond) {
		scaleexpr_for_reset(f);
		return false;
	}
	if (!f->holding) {
		f->holding = true;
		f->since_ms = now_ms;
	}
	return now_ms >= f->since_ms && now_ms - f->since_ms >= for_ms;
}

uint64_t
scaleexpr_for_held_ms(const struct scaleexpr_for *f, uint64_t now_ms)
{
	if (!f->holding || now_ms < f->since_ms)
		return 0;
	return now_ms - f->since_ms;
}
