package com.srprune.demo;

import android.content.res.AssetManager;
import android.os.Build;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import org.json.JSONArray;
import org.json.JSONException;
import org.json.JSONObject;

/**
 * The manifest that `srprune android stage` put in assets/srmodel/, checked against this phone and
 * against the loaded library, so a model for another ABI or scale is a message, not garbage output.
 */
public final class ModelInfo {
    public static final String ABI = "arm64-v8a";
    public static final String TRIPLE = "aarch64-linux-android";

    public final String model;
    public final int scale, inWidth, inHeight, outWidth, outHeight;

    private ModelInfo(String model, int scale, int inW, int inH, int outW, int outH) {
        this.model = model;
        this.scale = scale;
        this.inWidth = inW;
        this.inHeight = inH;
        this.outWidth = outW;
        this.outHeight = outH;
    }

    static String readAsset(AssetManager assets, String name) throws IOException {
        try (InputStream in = assets.open(name)) {
            ByteArrayOutputStream out = new ByteArrayOutputStream();
            byte[] buf = new byte[8192];
            for (int n; (n = in.read(buf)) > 0; ) out.write(buf, 0, n);
            return new String(out.toByteArray(), StandardCharsets.UTF_8);
        }
    }

    /** Parse and check the staged manifest; IllegalStateException with a user-facing message. */
    public static ModelInfo load(AssetManager assets) {
        String text;
        try {
            text = readAsset(assets, "srmodel/manifest.json");
        } catch (IOException e) {
            throw new IllegalStateException("no model staged: run `srprune android stage MODEL`, then rebuild the app");
        }
        boolean arm64 = false;
        for (String abi : Build.SUPPORTED_ABIS) arm64 |= ABI.equals(abi);
        if (!arm64) {
            throw new IllegalStateException("this phone does not run " + ABI + " code; the model is built for it");
        }
        try {
            return parse(new JSONObject(text));
        } catch (JSONException e) {
            throw new IllegalStateException(
                    "the staged manifest is damaged (" + e.getMessage() + "): stage the model again");
        }
    }

    static ModelInfo parse(JSONObject m) throws JSONException {
        String triple = m.getJSONObject("target").getString("triple");
        if (!TRIPLE.equals(triple)) {
            throw new IllegalStateException("the staged model was compiled for " + triple + ", not " + TRIPLE
                    + ": compile it with --target android-arm64");
        }
        if (m.getInt("abi_version") != 1) {
            throw new IllegalStateException(
                    "the staged model has C ABI " + m.getInt("abi_version") + "; this app reads 1");
        }
        JSONArray in = m.getJSONObject("input").getJSONArray("shape");
        JSONArray out = m.getJSONObject("output").getJSONArray("shape");
        JSONObject meta = m.getJSONObject("meta");
        int scale = meta.getInt("scale");
        ModelInfo info = new ModelInfo(meta.optString("model", "model"), scale, in.getInt(3), in.getInt(2),
                out.getInt(3), out.getInt(2));
        if (info.outWidth != info.inWidth * scale || info.outHeight != info.inHeight * scale) {
            throw new IllegalStateException("the manifest says x" + scale + " but the shapes are " + info.inWidth + "x"
                    + info.inHeight + " -> " + info.outWidth + "x" + info.outHeight + ": stage the model again");
        }
        return info;
    }

    /** The library that was loaded must be the one the manifest describes (a stale APK otherwise). */
    public void checkAgainst(NativeEngine engine) {
        if (engine.inWidth != inWidth || engine.inHeight != inHeight || engine.scale != scale
                || engine.outWidth != outWidth || engine.outHeight != outHeight) {
            throw new IllegalStateException("the model library (" + engine.inWidth + "x" + engine.inHeight + " x"
                    + engine.scale + ") differs from the staged manifest (" + inWidth + "x" + inHeight + " x" + scale
                    + "): rebuild and reinstall the app after staging");
        }
    }
}
