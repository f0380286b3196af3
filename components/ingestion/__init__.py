"""Image ingestion: IDX files, class-per-folder PNG/JPEG trees and TFRecords into tf.Examples."""
