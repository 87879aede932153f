/* The application's own view of /proc/sysvipc (procview.c). */
#ifndef APPSHOT_SHIM_PROCVIEW_H
#define APPSHOT_SHIM_PROCVIEW_H

struct sysvipc_shm_usage {
	int ids;
	unsigned long pages, rss, swap; /* in pages, as SHM_INFO counts */
};

/* The application's segments added up from the kernel's listing, the one
 * place that has their resident and swapped sizes. */
void sysvipc_shm_usage(struct sysvipc_shm_usage *u);

#endif
