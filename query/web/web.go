// Package web holds the search page that the HTTP gateway serves at /.
package web

import "embed"

// FS holds static/: index.html, app.js and style.css.
//
//go:embed static
var FS embed.FS
