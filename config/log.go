package config

import "log/slog"

// log builds the log block: the level and format of ioproxy's logs.
func (b *builder) log(raw *logSchema) Log {
	l := Log{Level: slog.LevelInfo, Format: "text"}
	if raw == nil {
		return l
	}
	if raw.Level != nil {
		if err := l.Level.UnmarshalText([]byte(*raw.Level)); err != nil {
			b.errorf(raw.LevelRange, "Invalid log level", "%q is not a level; write one of \"debug\", \"info\", \"warn\" or \"error\".", *raw.Level)
		}
	}
	if raw.Format != nil {
		switch *raw.Format {
		case "text", "json":
			l.Format = *raw.Format
		default:
			b.errorf(raw.FormatRange, "Invalid log format", "%q is not a format; write format = \"text\" or format = \"json\".", *raw.Format)
		}
	}
	return l
}
