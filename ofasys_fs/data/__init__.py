"""ofasys_fs.data"""
