"""The ground every layer stands on: camera geometry, result types, resource paths, machine description, native-log filter."""
