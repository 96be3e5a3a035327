"""ofasys_fs.engine"""
