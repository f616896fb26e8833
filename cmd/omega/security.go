package main

import (
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/IBM/sarama"
	"github.com/redis/go-redis/v9"
	"github.com/xdg-go/scram"
	"go.temporal.io/sdk/client"
)

// Credentials and TLS for every client come from the environment, never from rules or journeys.
// A secret NAME may be given as the file NAME_FILE instead (Kubernetes secrets mounted as files);
// the file wins.

// secret reads NAME_FILE (trimmed) or NAME.
func secret(name string) (string, error) {
	if path := os.Getenv(name + "_FILE"); path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return "", fmt.Errorf("%s_FILE: %w", name, err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	return os.Getenv(name), nil
}

// tlsFromEnv builds the TLS setup of one client from OMEGA_<P>_TLS (1: on), OMEGA_<P>_CA_FILE
// (the CAs to trust; the system's when empty), OMEGA_<P>_CERT_FILE and OMEGA_<P>_KEY_FILE (a
// client certificate, for mTLS) and OMEGA_<P>_TLS_SERVER_NAME. nil when TLS is off.
func tlsFromEnv(p string) (*tls.Config, error) {
	name := "OMEGA_" + p
	ca, cert, key := os.Getenv(name+"_CA_FILE"), os.Getenv(name+"_CERT_FILE"), os.Getenv(name+"_KEY_FILE")
	if os.Getenv(name+"_TLS") != "1" && ca == "" && cert == "" && key == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: os.Getenv(name + "_TLS_SERVER_NAME")}
	if ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return nil, fmt.Errorf("%s_CA_FILE: %w", name, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s_CA_FILE: no PEM certificate in %s", name, ca)
		}
		cfg.RootCAs = pool
	}
	if (cert == "") != (key == "") {
		return nil, fmt.Errorf("%s_CERT_FILE and %s_KEY_FILE go together", name, name)
	}
	if cert != "" {
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return nil, fmt.Errorf("%s_CERT_FILE/_KEY_FILE: %w", name, err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// secureKafka applies OMEGA_KAFKA_TLS/_CA_FILE/_CERT_FILE/_KEY_FILE and SASL:
// OMEGA_KAFKA_SASL_MECHANISM (SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN), OMEGA_KAFKA_SASL_USER,
// OMEGA_KAFKA_SASL_PASSWORD (or _FILE).
func secureKafka(sc *sarama.Config) error {
	t, err := tlsFromEnv("KAFKA")
	if err != nil {
		return err
	}
	if t != nil {
		sc.Net.TLS.Enable, sc.Net.TLS.Config = true, t
	}
	mech := os.Getenv("OMEGA_KAFKA_SASL_MECHANISM")
	if mech == "" {
		return nil
	}
	pass, err := secret("OMEGA_KAFKA_SASL_PASSWORD")
	if err != nil {
		return err
	}
	sc.Net.SASL.Enable, sc.Net.SASL.Handshake = true, true
	sc.Net.SASL.User, sc.Net.SASL.Password = os.Getenv("OMEGA_KAFKA_SASL_USER"), pass
	if sc.Net.SASL.User == "" || pass == "" {
		return errors.New("OMEGA_KAFKA_SASL_USER and OMEGA_KAFKA_SASL_PASSWORD are required with OMEGA_KAFKA_SASL_MECHANISM")
	}
	switch mech {
	case "PLAIN":
		if !sc.Net.TLS.Enable {
			return errors.New("OMEGA_KAFKA_SASL_MECHANISM=PLAIN sends the password in clear: set OMEGA_KAFKA_TLS=1 (or use SCRAM)")
		}
		sc.Net.SASL.Mechanism = sarama.SASLTypePlaintext
	case "SCRAM-SHA-256":
		sc.Net.SASL.Mechanism = sarama.SASLTypeSCRAMSHA256
		sc.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &scramClient{gen: scram.HashGeneratorFcn(sha256.New)} }
	case "SCRAM-SHA-512":
		sc.Net.SASL.Mechanism = sarama.SASLTypeSCRAMSHA512
		sc.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &scramClient{gen: scram.HashGeneratorFcn(sha512.New)} }
	default:
		return fmt.Errorf("OMEGA_KAFKA_SASL_MECHANISM: want SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN, got %q", mech)
	}
	return nil
}

// scramClient is Sarama's SCRAM conversation on xdg-go/scram.
type scramClient struct {
	gen  scram.HashGeneratorFcn
	conv *scram.ClientConversation
}

func (c *scramClient) Begin(user, password, authzID string) error {
	cl, err := c.gen.NewClient(user, password, authzID)
	if err != nil {
		return err
	}
	c.conv = cl.NewConversation()
	return nil
}

func (c *scramClient) Step(challenge string) (string, error) { return c.conv.Step(challenge) }
func (c *scramClient) Done() bool                            { return c.conv.Done() }

// redisOptions applies OMEGA_REDIS_USERNAME (an ACL user), OMEGA_REDIS_PASSWORD (or _FILE) and
// OMEGA_REDIS_TLS/_CA_FILE/_CERT_FILE/_KEY_FILE.
func redisOptions(addr string) (*redis.Options, error) {
	pass, err := secret("OMEGA_REDIS_PASSWORD")
	if err != nil {
		return nil, err
	}
	t, err := tlsFromEnv("REDIS")
	if err != nil {
		return nil, err
	}
	return &redis.Options{Addr: addr, Username: os.Getenv("OMEGA_REDIS_USERNAME"), Password: pass, TLSConfig: t}, nil
}

// secureTemporal applies OMEGA_TEMPORAL_TLS/_CA_FILE/_CERT_FILE/_KEY_FILE (mTLS) and
// OMEGA_TEMPORAL_API_KEY (or _FILE).
func secureTemporal(o *client.Options) error {
	t, err := tlsFromEnv("TEMPORAL")
	if err != nil {
		return err
	}
	key, err := secret("OMEGA_TEMPORAL_API_KEY")
	if err != nil {
		return err
	}
	if key != "" {
		o.Credentials = client.NewAPIKeyStaticCredentials(key)
		if t == nil {
			t = &tls.Config{MinVersion: tls.VersionTLS12} // an API key never travels in clear
		}
	}
	if t != nil {
		o.ConnectionOptions.TLS = t
	}
	return nil
}

// serverTLS is the API's own TLS: OMEGA_API_TLS_CERT_FILE and OMEGA_API_TLS_KEY_FILE, and with
// OMEGA_API_TLS_CA_FILE client certificates signed by that CA are required. nil when not set.
func serverTLS() (*tls.Config, error) {
	cert, key, ca := os.Getenv("OMEGA_API_TLS_CERT_FILE"), os.Getenv("OMEGA_API_TLS_KEY_FILE"), os.Getenv("OMEGA_API_TLS_CA_FILE")
	if cert == "" && key == "" {
		if ca != "" {
			return nil, errors.New("OMEGA_API_TLS_CA_FILE asks for client certificates, which needs TLS: set OMEGA_API_TLS_CERT_FILE and OMEGA_API_TLS_KEY_FILE")
		}
		return nil, nil
	}
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		return nil, fmt.Errorf("OMEGA_API_TLS_CERT_FILE/OMEGA_API_TLS_KEY_FILE: %w", err)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{pair}}
	if ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return nil, fmt.Errorf("OMEGA_API_TLS_CA_FILE: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("OMEGA_API_TLS_CA_FILE: no PEM certificate in %s", ca)
		}
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}
