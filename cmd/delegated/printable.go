package main

import (
	"strconv"
	"strings"
	"unicode"
)

// printable is s for a terminal: as is when every character prints, else
// Go-quoted. Names stored before they were validated (or returned by an
// older daemon) may hold newlines or escape sequences; these must never
// reach the operator's terminal raw.
func printable(s string) string {
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return strconv.Quote(s)
		}
	}
	return s
}

// printableText is printable for multi-line text (an error): line breaks
// stay, every other non-printing character is escaped.
func printableText(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if p := printable(l); p != l {
			lines[i] = strings.Trim(p, `"`)
		}
	}
	return strings.Join(lines, "\n")
}
