/*
 * name.h - the characters a name may use: A-Z a-z 0-9 . _ -
 *
 * One rule for frontend, backend and server names in the config and for
 * pool names in announcements (a pool names a backend). Header-only and
 * dependency-free, so the pure announcement codec can use it too.
 */
#ifndef SHOAL_NAME_H
#define SHOAL_NAME_H

#include <stdbool.h>
#include <stddef.h>

static inline bool
name_chars_valid(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (!(s[i] >= 'a' && s[i] <= 'z') &&
		    !(s[i] >= 'A' && s[i] <= 'Z') &&
		    !(s[i] >= '0' && s[i] <= '9') &&
		    s[i] != '.' && s[i] != '_' && s[i] != '-')
			return false;
	return true;
}

#endif /* SHOAL_NAME_H */
