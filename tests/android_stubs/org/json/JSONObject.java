package org.json;

public class JSONObject {
    public JSONObject(String json) throws JSONException { throw new RuntimeException("Stub!"); }
    public JSONObject getJSONObject(String name) throws JSONException { throw new RuntimeException("Stub!"); }
    public JSONArray getJSONArray(String name) throws JSONException { throw new RuntimeException("Stub!"); }
    public String getString(String name) throws JSONException { throw new RuntimeException("Stub!"); }
    public int getInt(String name) throws JSONException { throw new RuntimeException("Stub!"); }
    public double getDouble(String name) throws JSONException { throw new RuntimeException("Stub!"); }
    public String optString(String name, String fallback) { throw new RuntimeException("Stub!"); }
}
