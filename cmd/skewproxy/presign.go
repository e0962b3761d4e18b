package main

import (
	"log/slog"
	"net/http"

	"github.com/skewproxy/skewproxy/signer"
	"github.com/skewproxy/skewproxy/timesource"
)

// presignHandler answers POST /presign on the admin port.
func presignHandler(_ *signer.Signer, _ timesource.Clock, _ *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, `{"message":"presign: not yet available"}`, http.StatusNotImplemented)
	})
}
