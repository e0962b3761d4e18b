package lambdalimit

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"
)

func TestStatusJSON(t *testing.T) {
	l := New(Config{MaxInflight: 3, FunctionMaxInflight: map[string]int{"idle": 2, "busy": 4}, QueueTimeout: time.Second})
	rels := admitN(t, l, "busy", 2)
	h := throttled()
	h.Set("Retry-After", "1")
	rels[0](http.StatusTooManyRequests, h)
	defer rels[1](0, nil)

	raw, err := json.Marshal(l.Status())
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Inflight    *int `json:"inflight"`
		Queued      *int `json:"queued"`
		MaxInflight int  `json:"max_inflight"`
		Functions   map[string]struct {
			Inflight       *int    `json:"inflight"`
			Queued         *int    `json:"queued"`
			Limit          *int    `json:"limit"`
			EffectiveLimit *int    `json:"effective_limit"`
			PausedUntil    *string `json:"paused_until"`
		} `json:"functions"`
	}
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatalf("%s: %v", raw, err)
	}
	if got.Inflight == nil || *got.Inflight != 1 || got.Queued == nil || *got.Queued != 0 || got.MaxInflight != 3 {
		t.Errorf("top level of %s", raw)
	}
	busy, idle := got.Functions["busy"], got.Functions["idle"]
	if busy.Inflight == nil || *busy.Inflight != 1 || *busy.Limit != 4 || *busy.EffectiveLimit != 1 || busy.PausedUntil == nil {
		t.Errorf("busy in %s", raw)
	}
	if idle.Limit == nil || *idle.Limit != 2 || *idle.EffectiveLimit != 2 || *idle.Queued != 0 || idle.PausedUntil != nil {
		t.Errorf("idle in %s", raw)
	}
}
