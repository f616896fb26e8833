package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/require"
	"github.com/xdg-go/scram"
	"go.temporal.io/sdk/client"
)

// writeCert writes a self-signed certificate and its key as PEM files.
func writeCert(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "omega-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	kb, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	require.NoError(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600))
	return certFile, keyFile
}

func TestTLSFromEnv(t *testing.T) {
	c, err := tlsFromEnv("KAFKA")
	require.NoError(t, err)
	require.Nil(t, c, "off unless asked for")

	cert, key := writeCert(t)
	t.Setenv("OMEGA_KAFKA_CA_FILE", cert)
	t.Setenv("OMEGA_KAFKA_CERT_FILE", cert)
	t.Setenv("OMEGA_KAFKA_KEY_FILE", key)
	t.Setenv("OMEGA_KAFKA_TLS_SERVER_NAME", "kafka.internal")
	c, err = tlsFromEnv("KAFKA")
	require.NoError(t, err)
	require.NotNil(t, c.RootCAs)
	require.Len(t, c.Certificates, 1)
	require.Equal(t, "kafka.internal", c.ServerName)

	t.Setenv("OMEGA_KAFKA_KEY_FILE", "")
	_, err = tlsFromEnv("KAFKA")
	require.ErrorContains(t, err, "go together")
	t.Setenv("OMEGA_KAFKA_CERT_FILE", "")
	t.Setenv("OMEGA_KAFKA_CA_FILE", "")
	t.Setenv("OMEGA_KAFKA_TLS_SERVER_NAME", "")
	t.Setenv("OMEGA_KAFKA_KEY_FILE", key)
	_, err = tlsFromEnv("KAFKA")
	require.ErrorContains(t, err, "go together", "a key alone is an error, not TLS off")
	t.Setenv("OMEGA_KAFKA_KEY_FILE", "")
	t.Setenv("OMEGA_KAFKA_CA_FILE", key)
	_, err = tlsFromEnv("KAFKA")
	require.ErrorContains(t, err, "no PEM certificate")
}

// SASL/SCRAM against xdg-go's server side: the conversation the broker would run succeeds with
// the password from the _FILE and fails with another.
func TestKafkaSCRAM(t *testing.T) {
	pw := filepath.Join(t.TempDir(), "pw")
	require.NoError(t, os.WriteFile(pw, []byte("s3cret\n"), 0o600))
	t.Setenv("OMEGA_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
	t.Setenv("OMEGA_KAFKA_SASL_USER", "omega")
	t.Setenv("OMEGA_KAFKA_SASL_PASSWORD_FILE", pw)
	t.Setenv("OMEGA_KAFKA_TLS", "1")
	sc := sarama.NewConfig()
	require.NoError(t, secureKafka(sc))
	require.True(t, sc.Net.TLS.Enable)
	require.Equal(t, sarama.SASLMechanism(sarama.SASLTypeSCRAMSHA512), sc.Net.SASL.Mechanism)
	require.Equal(t, "s3cret", sc.Net.SASL.Password)

	converse := func(serverPassword string) bool {
		stored := func() scram.StoredCredentials {
			cl, err := scram.HashGeneratorFcn(sha512.New).NewClient("omega", serverPassword, "")
			require.NoError(t, err)
			creds, err := cl.GetStoredCredentialsWithError(scram.KeyFactors{Salt: "NaCl-salt", Iters: 4096})
			require.NoError(t, err)
			return creds
		}()
		srv, err := scram.HashGeneratorFcn(sha512.New).NewServer(func(string) (scram.StoredCredentials, error) { return stored, nil })
		require.NoError(t, err)
		sconv := srv.NewConversation()
		c := sc.Net.SASL.SCRAMClientGeneratorFunc()
		require.NoError(t, c.Begin(sc.Net.SASL.User, sc.Net.SASL.Password, ""))
		msg, err := c.Step("")
		for err == nil && !c.Done() {
			var reply string
			if reply, err = sconv.Step(msg); err != nil {
				return false
			}
			msg, err = c.Step(reply)
		}
		return err == nil && sconv.Valid()
	}
	require.True(t, converse("s3cret"))
	require.False(t, converse("other"))

	t.Setenv("OMEGA_KAFKA_SASL_MECHANISM", "GSSAPI")
	require.ErrorContains(t, secureKafka(sarama.NewConfig()), "OMEGA_KAFKA_SASL_MECHANISM")
	t.Setenv("OMEGA_KAFKA_SASL_MECHANISM", "PLAIN")
	t.Setenv("OMEGA_KAFKA_SASL_PASSWORD_FILE", "")
	require.ErrorContains(t, secureKafka(sarama.NewConfig()), "required")
	t.Setenv("OMEGA_KAFKA_SASL_PASSWORD", "pw")
	require.NoError(t, secureKafka(sarama.NewConfig()), "PLAIN over TLS")
	t.Setenv("OMEGA_KAFKA_TLS", "")
	require.ErrorContains(t, secureKafka(sarama.NewConfig()), "in clear")

	t.Setenv("OMEGA_API_TLS_CA_FILE", pw)
	_, err := serverTLS()
	require.ErrorContains(t, err, "needs TLS", "client certificates without TLS are refused, not ignored")
}

func TestRedisAndTemporalCredentials(t *testing.T) {
	t.Setenv("OMEGA_REDIS_USERNAME", "omega-worker")
	t.Setenv("OMEGA_REDIS_PASSWORD", "pw")
	t.Setenv("OMEGA_REDIS_TLS", "1")
	o, err := redisOptions("redis:6380")
	require.NoError(t, err)
	require.Equal(t, "omega-worker", o.Username)
	require.Equal(t, "pw", o.Password)
	require.NotNil(t, o.TLSConfig)

	var co client.Options
	require.NoError(t, secureTemporal(&co))
	require.Nil(t, co.Credentials)
	require.Nil(t, co.ConnectionOptions.TLS)
	t.Setenv("OMEGA_TEMPORAL_API_KEY", "tk")
	require.NoError(t, secureTemporal(&co))
	require.NotNil(t, co.Credentials)
	require.NotNil(t, co.ConnectionOptions.TLS, "an API key never travels in clear")

	t.Setenv("OMEGA_SMS_TOKEN_FILE", filepath.Join(t.TempDir(), "missing"))
	_, err = secret("OMEGA_SMS_TOKEN")
	require.ErrorContains(t, err, "OMEGA_SMS_TOKEN_FILE")
}
