"""ofasys_fs.cli"""
