package fleet_test

import (
	"context"
	"log"
	"time"

	"github.com/skewproxy/skewproxy/proxy/lambdalimit"
	"github.com/skewproxy/skewproxy/proxy/lambdalimit/fleet"
)

// Every proxy of the fleet builds the same coordinator: one Redis, one
// namespace, the same limits. The limiter queues locally and takes a
// fleet-wide slot for each invoke it admits.
func ExampleNew() {
	corrected := time.Now // in the proxy: the corrected clock (timesource)
	coord, err := fleet.New(fleet.Config{
		URL:                 "redis://127.0.0.1:6379/0",
		Namespace:           "payments",
		MaxInflight:         100,
		FunctionMaxInflight: map[string]int{"resize-image": 20},
		FleetSize:           10, // Redis down: each proxy keeps 10 and 2
		Clock:               corrected,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer coord.Close(context.Background())
	limiter := lambdalimit.New(lambdalimit.Config{
		MaxInflight:         100,
		FunctionMaxInflight: map[string]int{"resize-image": 20},
		Clock:               corrected,
		Coordinator:         coord,
	})
	_ = limiter // the proxy's Admitter
}
