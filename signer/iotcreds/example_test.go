package iotcreds_test

import (
	"context"
	"fmt"
	"time"

	"github.com/skewproxy/skewproxy/signer"
	"github.com/skewproxy/skewproxy/signer/iotcreds"
)

// A gateway's credentials from its AWS IoT certificate, cached and
// refreshed by the corrected clock (here a stand-in).
func Example() {
	correctedNow := time.Now // the proxy passes its timesource clock's Now
	p, err := iotcreds.New(iotcreds.Options{
		Endpoint:  "c1a2b3c4d5e6f7.credentials.iot.eu-west-1.amazonaws.com",
		RoleAlias: "skewproxy-gateway",
		ThingName: "gateway-1",
		CertFile:  "/etc/skewproxy/iot/device.pem.crt",
		KeyFile:   "/etc/skewproxy/iot/private.pem.key",
		Now:       correctedNow,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	creds := signer.NewCredentialsCache(p, signer.CredentialsCacheOptions{Now: correctedNow})
	c, err := creds.Retrieve(context.Background())
	if err != nil {
		fmt.Println(err) // an *iotcreds.Error naming the cause
		return
	}
	fmt.Println("credentials until", c.Expires)
}
