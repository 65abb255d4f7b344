/*
 * default_ini.c - print the embedded default configuration as a file:
 * the build writes it as shoal.ini, which the Debian package installs as
 * /etc/shoal/shoal.ini, so the packaged config and `shoal` without -c
 * never differ. Not installed.
 */
#include <stdio.h>
#include <string.h>

#include "conf.h"

int
main(void)
{
	const char	*body = conf_default_text;
	const char	*nl = strchr(body, '\n');

	/* The embedded text's first line says "started without -c". */
	if (nl != NULL)
		body = nl + 1;
	fputs("; /etc/shoal/shoal.ini - shoal's configuration, as installed:\n"
	    "; the built-in default, on loopback only. Check a change with\n"
	    ";   shoal -t -c /etc/shoal/shoal.ini\n"
	    "; and apply it with `systemctl reload shoal` (fails, and keeps the\n"
	    "; running configuration, when the new one is refused).\n"
	    "; Reference: shoal(8) and configuration.md in /usr/share/doc/shoal/\n"
	    "; (examples/ there too).\n", stdout);
	fputs(body, stdout);
	return fflush(stdout) == EOF || ferror(stdout) ? 1 : 0;
}
