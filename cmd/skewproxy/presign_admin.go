package main

// POST /presign on the admin port.

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"

	"github.com/skewproxy/skewproxy/signer"
	"github.com/skewproxy/skewproxy/timesource"
)

// presignBody is the JSON body of POST /presign.
type presignBody struct {
	Method      string            `json:"method"`
	URL         string            `json:"url"`
	Bucket      string            `json:"bucket"`
	Key         string            `json:"key"`
	Region      string            `json:"region"`
	Expires     json.RawMessage   `json:"expires"` // "15m" or 900
	Headers     map[string]string `json:"headers"`
	ContentType string            `json:"content_type"`
	Clamp       bool              `json:"clamp"`
}

// presignHandler answers POST /presign on the admin port, so that an app
// behind the sidecar can mint URLs without holding keys. It signs with
// sgn's credentials at clock's time; the admin listener is loopback unless
// the operator allowed otherwise.
func presignHandler(sgn *signer.Signer, clock timesource.Clock, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	defaultRegion := presignDefaultRegion
	for _, k := range []string{"AWS_REGION", "AWS_DEFAULT_REGION"} {
		if v := os.Getenv(k); validRegion(v) {
			defaultRegion = v
			break
		}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			presignReply(w, http.StatusMethodNotAllowed, map[string]string{"message": "use POST with a JSON body"})
			return
		}
		var b presignBody
		dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&b); err != nil {
			presignReply(w, http.StatusBadRequest, map[string]string{"message": "body: want a JSON object such as {\"method\":\"GET\",\"bucket\":\"B\",\"key\":\"K\",\"expires\":\"15m\"}: " + err.Error()})
			return
		}
		req, err := presignBodyRequest(b, defaultRegion)
		if err != nil {
			presignReply(w, http.StatusBadRequest, map[string]string{"message": err.Error()})
			return
		}
		res, err := presign(r.Context(), sgn, "", clock.Now(), req, `"clamp": true`)
		switch {
		case isInputError(err):
			presignReply(w, http.StatusBadRequest, map[string]string{"message": err.Error()})
			return
		case err != nil:
			log.Error("presign failed", "err", err)
			presignReply(w, http.StatusServiceUnavailable, map[string]string{"message": "presign failed: the proxy's credentials are unavailable or signing failed; see the proxy log"})
			return
		}
		if !clock.Status().Synced {
			res.Warnings = append(res.Warnings, "no time source has answered yet: signed with the host clock")
		}
		log.Info("presigned URL", presignLogAttrs(req, res)...)
		presignReply(w, http.StatusOK, res)
	})
}

// presignBodyRequest turns a POST /presign body into a presignRequest.
func presignBodyRequest(b presignBody, defaultRegion string) (presignRequest, error) {
	expires := ""
	if len(b.Expires) > 0 && string(b.Expires) != "null" {
		var s string
		var n json.Number
		if err := json.Unmarshal(b.Expires, &s); err == nil {
			expires = s
		} else if err := json.Unmarshal(b.Expires, &n); err == nil {
			expires = n.String()
		} else {
			return presignRequest{}, inputErrorf("expires: want a duration string (\"15m\") or whole seconds (900)")
		}
		if expires == "" {
			return presignRequest{}, inputErrorf("expires: empty")
		}
	}
	h := make(http.Header)
	for k, v := range b.Headers {
		h.Add(k, v)
	}
	region := b.Region
	if region == "" && b.URL == "" {
		region = defaultRegion
	}
	return buildPresign(presignInput{Method: b.Method, Target: b.URL, Bucket: b.Bucket, Key: b.Key, Region: region,
		Header: h, ContentType: b.ContentType, Expires: expires, Clamp: b.Clamp})
}

func presignReply(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = writeJSON(w, v)
}
