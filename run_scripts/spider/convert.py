"""Spider -> shards for the built-in task "spider" (columns src, tgt, database, db_id).

Input: the Spider release (Yu et al., EMNLP 2018, https://yale-lily.github.io/spider, spider.zip):

    train_spider.json / train_others.json / dev.json: [{"db_id": "department_management",
        "question": "How many heads of the departments are older than 56 ?",
        "query": "SELECT count(*) FROM head WHERE age  >  56", "query_toks": [...],
        "query_toks_no_value": [...], "question_toks": [...], "sql": {...}}, ...]
    tables.json: [{"db_id": "department_management",
        "table_names_original": ["department", "head", "management"], "table_names": [...],
        "column_names_original": [[-1, "*"], [0, "Department_ID"], [0, "Name"], ...],
        "column_names": [...], "column_types": [...], "primary_keys": [...], "foreign_keys": [...]}, ...]
    database/<db_id>/<db_id>.sqlite: the databases (used for execution, not needed here)

One row per question; `database` is the schema in the task's form [[table, "col , col , ..."], ...],
lowercased, tables and columns in tables.json's original order (the order of the .sqlite files, which the
task's own schema_from_sqlite reads for rows that give db_path instead).
"""
import argparse
import sys
from collections.abc import Iterator

from run_scripts.common.convert_lib import ConversionError, Converter, MediaReader, field, read_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", required=True, action="append",
                        help="questions file (train_spider.json, train_others.json, dev.json); repeatable")
    parser.add_argument("--tables", required=True, help="tables.json")


def schemas(path: str) -> dict[str, list[list[str]]]:
    """db_id -> [[table, "col , col"], ...] from tables.json."""
    result = {}
    for index, database in enumerate(read_json(path)):
        where = f"{path}, database {index}"
        tables = [name.lower() for name in field(database, "table_names_original", where)]
        columns: list[list[str]] = [[] for _ in tables]
        for table_index, column in field(database, "column_names_original", where):
            if table_index >= 0:
                columns[table_index].append(column.lower())
        result[field(database, "db_id", where)] = [[table, " , ".join(cols)] for table, cols in zip(tables, columns)]
    return result


def read_rows(args: argparse.Namespace, media: MediaReader) -> Iterator[dict]:
    schema_of = schemas(args.tables)
    for path in args.json:
        for index, example in enumerate(read_json(path)):
            where = f"{path}, example {index}"
            db_id = field(example, "db_id", where)
            if db_id not in schema_of:
                raise ConversionError(f"{where}: database {db_id!r} is not in {args.tables}")
            yield {"src": field(example, "question", where), "tgt": field(example, "query", where),
                   "database": schema_of[db_id], "db_id": db_id}


CONVERTER = Converter("spider/convert.py", __doc__, add_arguments, read_rows, "spider")

if __name__ == "__main__":
    sys.exit(CONVERTER.main())
