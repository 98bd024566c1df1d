// A complete minimal device for the telemetry hub on an ESP32 with PubSubClient and
// ArduinoJson 7: the same device as docs/examples/device.py (see docs/devices.md).
//
// It connects with its uid and token (client id = uid), says it is online and leaves an
// "offline" last will, publishes a temperature every `interval` seconds, answers the
// commands "ping" and "set_interval", applies the desired attribute "interval" and
// reports its attributes with its firmware version.

#include <WiFi.h>
#include <PubSubClient.h>
#include <ArduinoJson.h>
#include <time.h>

const char *WIFI_SSID = "your-network";
const char *WIFI_PASSWORD = "your-password";
const char *BROKER_HOST = "hub.example.net";
const uint16_t BROKER_PORT = 1883;  // 8883 with WiFiClientSecure behind a TLS broker
const char *UID = "boiler-1";
const char *TOKEN = "the token the hub printed once";
const char *FIRMWARE = "1.0.0";

WiFiClient network;
PubSubClient mqtt(network);
float intervalSeconds = 2.0;
unsigned long lastSample = 0;
char topicBuffer[128];

const char *topic(const char *rest) {
  snprintf(topicBuffer, sizeof(topicBuffer), "devices/%s/%s", UID, rest);
  return topicBuffer;
}

uint64_t epochMillis() {
  struct timeval now;
  gettimeofday(&now, nullptr);
  return (uint64_t)now.tv_sec * 1000 + now.tv_usec / 1000;
}

void report() {
  JsonDocument state;
  state["interval"] = intervalSeconds;
  state["firmware"] = FIRMWARE;
  char payload[128];
  size_t length = serializeJson(state, payload);
  mqtt.publish(topic("attributes/reported"), (const uint8_t *)payload, length, false);
}

void answer(const char *commandId, JsonDocument &reply) {
  char replyTopic[160];
  snprintf(replyTopic, sizeof(replyTopic), "devices/%s/commands/%s/reply", UID, commandId);
  char payload[256];
  size_t length = serializeJson(reply, payload);
  mqtt.publish(replyTopic, (const uint8_t *)payload, length, false);
}

void onMessage(char *receivedTopic, byte *payload, unsigned int length) {
  JsonDocument message;
  if (deserializeJson(message, payload, length)) return;
  String name(receivedTopic);
  if (name == topic("attributes/desired")) {
    // {"version": n, "values": {...}}: apply what this firmware understands.
    JsonVariant interval = message["values"]["interval"];
    if (interval.is<float>() && interval.as<float>() >= 0.1 && interval.as<float>() <= 3600) {
      intervalSeconds = interval.as<float>();
    }
    report();
  } else if (name == topic("errors")) {
    Serial.printf("hub refused a message: %.*s\n", length, (const char *)payload);
  } else if (name.startsWith(String("devices/") + UID + "/commands/")) {
    // {"method": str, "params": object} on devices/{uid}/commands/{command_id}
    const char *commandId = receivedTopic + name.lastIndexOf('/') + 1;
    const char *method = message["method"] | "";
    JsonDocument reply;
    if (strcmp(method, "ping") == 0) {
      reply["ok"] = true;
      reply["result"] = "pong";
    } else if (strcmp(method, "set_interval") == 0 && message["params"]["seconds"].is<float>()) {
      intervalSeconds = message["params"]["seconds"].as<float>();
      reply["ok"] = true;
      reply["result"]["seconds"] = intervalSeconds;
      report();
    } else {
      reply["ok"] = false;
      reply["error"] = String("unknown method ") + method;
    }
    answer(commandId, reply);
  }
}

void connectBroker() {
  while (!mqtt.connected()) {
    // client id = uid, username = uid, password = token; last will: offline, retained.
    if (mqtt.connect(UID, UID, TOKEN, topic("status"), 1, true, "offline")) {
      mqtt.subscribe(topic("commands/+"), 1);
      mqtt.subscribe(topic("attributes/desired"), 1);
      mqtt.subscribe(topic("errors"), 0);
      mqtt.publish(topic("status"), "online", true);
    } else {
      delay(2000);
    }
  }
}

void setup() {
  Serial.begin(115200);
  WiFi.begin(WIFI_SSID, WIFI_PASSWORD);
  while (WiFi.status() != WL_CONNECTED) delay(250);
  configTime(0, 0, "pool.ntp.org");  // readings carry epoch milliseconds
  mqtt.setServer(BROKER_HOST, BROKER_PORT);
  mqtt.setBufferSize(2048);  // desired attributes can be larger than the 256-byte default
  mqtt.setCallback(onMessage);
}

void loop() {
  connectBroker();
  mqtt.loop();
  if (millis() - lastSample >= intervalSeconds * 1000) {
    lastSample = millis();
    JsonDocument reading;
    reading["ts"] = epochMillis();
    reading["values"]["temperature"] = 21.0 + temperatureRead() / 100.0;
    char payload[128];
    size_t length = serializeJson(reading, payload);
    mqtt.publish(topic("telemetry"), (const uint8_t *)payload, length, false);
  }
}
