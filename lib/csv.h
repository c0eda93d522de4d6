/*
 * csv - a streaming RFC 4180 reader for imports.
 *
 * Fields may be quoted with '"' (a doubled quote inside stands for one, and
 * quoted fields may hold commas and line breaks); records end with CRLF or
 * LF; a UTF-8 byte-order mark at the very start is skipped.  A malformed
 * record (a quote inside an unquoted field, text after a closing quote, a
 * quote left open at end of input, a record over CSV_RECORD_MAX bytes) is
 * reported with its line number and skipped: the reader goes on with the next
 * line, so one bad row never hides the good ones after it.
 */
#ifndef SG_CSV_H
#define SG_CSV_H

#include <stdio.h>

#include "buf.h"

#define CSV_RECORD_MAX 65536
#define CSV_FIELDS_MAX 64

struct csv_reader;

struct csv_row {
    size_t line; /* physical line where the record starts (1-based) */
    size_t nfields;
    const char *field[CSV_FIELDS_MAX]; /* NUL-terminated, valid until the next csv_read */
    size_t flen[CSV_FIELDS_MAX];
};

/* csv_open - read from an open stream (not closed by csv_close) */
struct csv_reader *csv_open(FILE *fp);

/*
 * csv_read - the next record: 1 and row filled; 0 at end of input; -1 for a
 * malformed record (row->line and why say where and what; call again to go
 * on); -2 for a read error (errno set, why filled; do not go on).
 */
int csv_read(struct csv_reader *r, struct csv_row *row, struct buf *why);

/* csv_bytes - bytes consumed so far (for progress reports) */
unsigned long long csv_bytes(const struct csv_reader *r);

void csv_close(struct csv_reader *r);

#endif
