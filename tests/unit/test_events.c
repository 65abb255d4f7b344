/*
 * test_events.c - the event timeline: order, the ring's bound, sequence
 * numbers, text cut and made printable.
 */
#include <stdio.h>
#include <string.h>

#include "events.h"
#include "t.h"

int
main(void)
{
	const struct event	*e;
	char			 big[EVENTS_TEXT * 2];

	is_int((int)events_count(), 0, "empty at start");
	ok(events_get(0) == NULL, "nothing to get");
	events_add(EV_KIND_STATE, "app", "s1", "up -> down (%s)", "L4CON");
	events_add(EV_KIND_RELOAD, NULL, NULL, "reload done");
	is_int((int)events_count(), 2, "two kept");
	e = events_get(0);
	ok(e != NULL && e->seq == 1 && e->kind == EV_KIND_STATE &&
	    strcmp(e->backend, "app") == 0 && strcmp(e->server, "s1") == 0 &&
	    strcmp(e->text, "up -> down (L4CON)") == 0, "the first, as given");
	e = events_get(1);
	ok(e != NULL && e->seq == 2 && e->backend[0] == '\0' &&
	    e->server[0] == '\0', "no backend, no server: empty strings");
	ok(events_get(0)->at > 1.7e9, "wall clock time");
	ok(strcmp(events_kind_name(EV_KIND_HOOK), "hook") == 0, "kind names");
	ok(strcmp(events_kind_name((enum events_kind)99), "?") == 0, "unknown kind");

	for (int i = 0; i < EVENTS_MAX + 10; i++)
		events_add(EV_KIND_ADMIN, NULL, NULL, "command %d", i);
	is_int((int)events_count(), EVENTS_MAX, "bounded at EVENTS_MAX");
	e = events_get(0);
	ok(e->seq == 13 && strcmp(e->text, "command 10") == 0,
	    "the oldest were dropped (seq %llu, '%s')",
	    (unsigned long long)e->seq, e->text);
	e = events_get(EVENTS_MAX - 1);
	ok(e->seq == EVENTS_MAX + 12 && strcmp(e->text, "command 265") == 0,
	    "the newest last");
	for (size_t i = 1; i < events_count(); i++)
		if (events_get(i)->seq != events_get(i - 1)->seq + 1)
			ok(0, "sequence numbers follow each other");

	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	big[3] = '\n';
	big[4] = '\x1b';
	events_add(EV_KIND_FAULT, "b", "s", "%s", big);
	e = events_get(events_count() - 1);
	is_int((int)strlen(e->text), EVENTS_TEXT - 1, "text cut to fit");
	ok(e->text[3] == '?' && e->text[4] == '?', "control characters "
	    "replaced");
	events_reset();
	is_int((int)events_count(), 0, "reset");
	return done_testing();
}
