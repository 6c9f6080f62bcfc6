/* The version sluice reports (--version, the admin API, metrics). */
#ifndef SLUICE_CORE_VERSION_H
#define SLUICE_CORE_VERSION_H

#define SLUICE_VERSION "0.1.0"

#endif
